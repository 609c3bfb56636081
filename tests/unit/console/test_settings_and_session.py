"""The console's settings refuse known and weak secrets; its session cookie opens only
as it was sealed, and not after its age."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from services.console.api.auth import safe_next
from services.console.session import COOKIE, SessionSealer, check_csrf
from services.console.settings import ConsoleSettings


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TENURE_CONSOLE_ADMIN_TOKEN_HASHES", _digest("dev-admin-token")),
        ("TENURE_CONSOLE_SESSION_SECRET", "dev-console-session-secret-change-me-0123"),
    ],
)
def test_known_dev_secrets_are_refused_outside_dev_mode(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=f"{variable} holds a known development secret"):
        ConsoleSettings()
    monkeypatch.setenv("TENURE_DEV_MODE", "1")
    ConsoleSettings()


def test_a_short_session_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENURE_CONSOLE_SESSION_SECRET", "too-short")
    with pytest.raises(ValidationError, match="at least 32 characters"):
        ConsoleSettings()


def test_urls_of_the_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENURE_CONSOLE_SEGMENTER_URL", "http://segmenter:8002/")
    urls = ConsoleSettings().console.upstream_urls()
    assert urls["segmenter"] == "http://segmenter:8002"
    assert urls["metrics"] == "http://127.0.0.1:8005"


def _request(cookie: str | None) -> Request:
    headers = [(b"cookie", f"{COOKIE}={cookie}".encode())] if cookie else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def _sealed(sealer: SessionSealer, token: str) -> tuple[str, str]:
    response = Response()
    session = sealer.start(response, token)
    cookie = response.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    return cookie, session.csrf


def test_a_session_opens_only_with_its_own_secret_and_untouched() -> None:
    sealer = SessionSealer("s" * 40, max_age_s=60, secure=False)
    cookie, csrf = _sealed(sealer, "the-token")
    opened = sealer.open(_request(cookie))
    assert opened is not None and opened.token == "the-token" and opened.csrf == csrf
    assert "the-token" not in cookie
    assert SessionSealer("t" * 40, max_age_s=60, secure=False).open(_request(cookie)) is None
    assert (
        sealer.open(_request(cookie[:-6] + ("A" if cookie[-6] != "A" else "B") + cookie[-5:]))
        is None
    )
    assert sealer.open(_request(None)) is None
    assert (
        check_csrf(opened, csrf)
        and not check_csrf(opened, csrf[:-1])
        and not check_csrf(opened, None)
    )


def test_a_session_ends_after_its_age(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    sealer = SessionSealer("s" * 40, max_age_s=60, secure=True)
    cookie, _ = _sealed(sealer, "the-token")
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    assert sealer.open(_request(cookie)) is None


def test_the_sign_in_token_is_bound_to_its_cookie() -> None:
    sealer = SessionSealer("s" * 40, max_age_s=60, secure=False)
    nonce, token = sealer.login_form(_request(None))
    request = Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/login",
            "headers": [(b"cookie", f"tenure_console_login={nonce}".encode())],
        }
    )
    assert sealer.check_login(request, token)
    assert not sealer.check_login(request, token[:-1] + ("1" if token[-1] == "0" else "0"))
    assert not sealer.check_login(_request(None), token)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/segments/x?y=1", "/segments/x?y=1"),
        ("//evil.example", "/customers"),
        ("/\\evil.example", "/customers"),
        ("/\t/evil.example", "/customers"),
        ("/\n/evil.example", "/customers"),
        ("https://evil.example", "/customers"),
        ("", "/customers"),
        (None, "/customers"),
    ],
)
def test_sign_in_returns_only_to_the_console(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected
