"""Write keys as SDKs send them, and digest checks."""

from __future__ import annotations

import base64

import pytest

from services.ingest.auth import key_from_authorization
from shared.auth import TokenDigests, hash_token


def _basic(raw: str) -> str:
    return "Basic " + base64.b64encode(raw.encode()).decode()


@pytest.mark.parametrize(
    ("header", "key"),
    [
        (_basic("wk_123:"), "wk_123"),
        (_basic("wk_123:ignored"), "wk_123"),
        (_basic("wk_123"), "wk_123"),
        ("basic " + base64.b64encode(b"k:").decode(), "k"),
        (_basic(":"), None),
        ("Bearer wk_123", None),
        ("Basic !!!", None),
        ("Basic", None),
        (None, None),
    ],
)
def test_key_from_authorization(header: str | None, key: str | None) -> None:
    assert key_from_authorization(header) == key


def test_digests_accept_only_configured_keys() -> None:
    digests = TokenDigests([hash_token("a"), hash_token("b").upper(), ""])
    assert digests.accepts("a")
    assert digests.accepts("b")
    assert not digests.accepts("c")
    assert not digests.accepts(None)
    assert not digests.accepts("")
    assert not TokenDigests([""])
