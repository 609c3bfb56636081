"""The signed-in session: the admin token and a CSRF token, sealed in a cookie.

The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's
page sends it) and sealed with Fernet (AES-CBC + HMAC-SHA256, from ``cryptography``)
under a key derived from ``TENURE_CONSOLE_SESSION_SECRET``: it is signed, so it cannot
be forged or altered, and encrypted, so the admin token inside is not readable from a
copied cookie jar or a proxy log. It expires ``session_max_age_s`` after sign-in.

Every form carries the session's CSRF token (checked with :func:`check_csrf` in constant
time); the sign-in form, before any session exists, carries a token bound to a
short-lived pre-session cookie (:func:`login_nonce`). Logout deletes the cookie; the
console keeps no server-side session list, so a copy of a cookie taken before logout
stays valid until it expires (docs/console.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from fastapi import Request, Response

COOKIE = "tenure_console"
LOGIN_COOKIE = "tenure_console_login"
LOGIN_MAX_AGE_S = 3600


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    csrf: str


class SessionSealer:
    """Seals and opens :class:`Session` cookies; one per process, from the secret."""

    def __init__(self, secret: str, *, max_age_s: int, secure: bool) -> None:
        key = hashlib.sha256(b"tenure-console-session\x00" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))
        self._login_key = hashlib.sha256(b"tenure-console-login\x00" + secret.encode()).digest()
        self.max_age_s = max_age_s
        self.secure = secure

    # the session -------------------------------------------------------------------

    def open(self, request: Request) -> Session | None:
        sealed = request.cookies.get(COOKIE)
        if not sealed:
            return None
        try:
            data = json.loads(self._fernet.decrypt(sealed.encode(), ttl=self.max_age_s))
        except (InvalidToken, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        token, csrf = data.get("t"), data.get("c")
        if not isinstance(token, str) or not isinstance(csrf, str):
            return None
        return Session(token=token, csrf=csrf)

    def start(self, response: Response, token: str) -> Session:
        session = Session(token=token, csrf=secrets.token_urlsafe(32))
        sealed = self._fernet.encrypt(json.dumps({"t": token, "c": session.csrf}).encode())
        self._set(response, COOKIE, sealed.decode(), self.max_age_s)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return session

    def end(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")

    # the sign-in form's CSRF token ---------------------------------------------------

    def login_form(self, request: Request) -> tuple[str, str]:
        """The sign-in form's pre-session nonce (the cookie's value) and CSRF token."""
        nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
        return nonce, self._login_token(nonce)

    def bind_login(self, response: Response, nonce: str) -> None:
        """Set the pre-session cookie the sign-in form's CSRF token is bound to."""
        self._set(response, LOGIN_COOKIE, nonce, LOGIN_MAX_AGE_S)

    def check_login(self, request: Request, given: str) -> bool:
        nonce = request.cookies.get(LOGIN_COOKIE)
        return bool(nonce) and hmac.compare_digest(self._login_token(nonce or ""), given)

    def _login_token(self, nonce: str) -> str:
        return hmac.new(self._login_key, nonce.encode(), hashlib.sha256).hexdigest()

    def _set(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.secure,
        )


def check_csrf(session: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf.encode(), (given or "").encode())
