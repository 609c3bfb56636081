"""Issue 21: a service refuses to start with a secret everyone knows, outside dev mode."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from services.dispatcher.links import LinkSigner
from services.dispatcher.settings import DispatcherSettings


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TENURE_DISPATCHER_ADMIN_TOKEN_HASHES", _digest("dev-admin-token")),
        ("TENURE_DISPATCHER_ADMIN_TOKEN_HASHES", f"{_digest('mine')},{_digest('dev-admin-token')}"),
        ("TENURE_DISPATCHER_LINK_SECRET", "dev-link-secret-change-me-0123456789"),
        ("TENURE_DISPATCHER_ADMIN_TOKEN_HASHES", _digest("dev-write-key")),
    ],
)
def test_known_dev_secrets_are_refused_outside_dev_mode(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=f"{variable} holds a known development secret"):
        DispatcherSettings()
    monkeypatch.setenv("TENURE_DEV_MODE", "1")
    DispatcherSettings()


def test_own_secrets_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENURE_DISPATCHER_ADMIN_TOKEN_HASHES", _digest("a-real-token-0123"))
    monkeypatch.setenv("TENURE_DISPATCHER_LINK_SECRET", "a-real-link-secret-0123456789")
    assert DispatcherSettings().dispatcher.link_secret.get_secret_value().startswith("a-real")


def test_no_link_secret_no_dispatcher() -> None:
    with pytest.raises(ValueError, match="link secret must be at least 16"):
        LinkSigner(secret="", base_url="http://t")
