"""What erasure keeps of a reason, and its pseudonyms."""

from __future__ import annotations

import pytest

from shared.erasure import PSEUDONYM_PREFIX, pseudonym, reason_code


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (None, None),
        ("erased", "erased"),
        ("quiet_hours", "quiet_hours"),
        ("provider_error: smtp: 550 5.1.1 <alice@example.com>: no such user", "provider_error"),
        ("retries_exhausted: smtp: 421 try later", "retries_exhausted"),
        ("template_error: subject: 'name' is undefined", "template_error"),
        ("no template 'x'", "other"),
        ("550 <alice@example.com>", "other"),
        ("", "other"),
    ],
)
def test_a_reason_keeps_its_code_only(reason: str | None, code: str | None) -> None:
    assert reason_code(reason) == code


def test_pseudonyms_are_fresh_and_recognisable() -> None:
    first, second = pseudonym(), pseudonym()
    assert first != second
    assert first.startswith(PSEUDONYM_PREFIX) and second.startswith(PSEUDONYM_PREFIX)
