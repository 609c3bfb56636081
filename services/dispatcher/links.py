"""Signed tracking links: open pixel, click redirect, unsubscribe, preferences, survey,
push opened.

Each purpose signs with its own salt (a token made for one purpose is refused by the
others) and expires after its own ``max_age``. A token holds the dispatch id (the
endpoint finds the customer and attribution in the delivery row) and, for a click,
the URL to redirect to — the redirect goes only to the URL that was signed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode

#: derived keys by (secret, salt): itsdangerous derives one (an HMAC) on every call
_DERIVED: dict[tuple[bytes, bytes], bytes] = {}


class _Signer(TimestampSigner):
    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        secret = self.secret_keys[-1] if secret_key is None else _bytes(secret_key)
        found = _DERIVED.get((secret, self.salt))
        if found is None:
            found = _DERIVED[(secret, self.salt)] = super().derive_key(secret)
        return found


class _Serializer(URLSafeTimedSerializer):
    """Tokens as itsdangerous writes them, without trying zlib on payloads of a few
    dozen bytes (it never wins there, and cost a third of a signature). Compressed
    tokens still load."""

    default_signer = _Signer

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(self.serializer.dumps(obj, **self.serializer_kwargs))


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


class Purpose(StrEnum):
    OPEN = "open"
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    SURVEY = "survey"
    PUSH_OPENED = "push-opened"


#: how long a link of each purpose works, in seconds
DEFAULT_MAX_AGE_S: dict[Purpose, int] = {
    Purpose.OPEN: 90 * 86_400,
    Purpose.CLICK: 90 * 86_400,
    Purpose.UNSUBSCRIBE: 365 * 86_400,
    Purpose.PREFERENCES: 365 * 86_400,
    Purpose.SURVEY: 30 * 86_400,
    Purpose.PUSH_OPENED: 30 * 86_400,
}

#: where each purpose is served, under the public base URL
PATHS: dict[Purpose, str] = {
    Purpose.OPEN: "/t/o",
    Purpose.CLICK: "/t/c",
    Purpose.UNSUBSCRIBE: "/t/u",
    Purpose.PREFERENCES: "/t/p",
    Purpose.SURVEY: "/t/s",
    Purpose.PUSH_OPENED: "/t/push-opened",
}


class LinkRefused(Exception):
    """The token is not one we signed for this purpose, or it has expired."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LinkPayload:
    dispatch_id: str
    #: the click's target, the survey's kind (``nps`` / ``csat``)
    target: str | None = None
    #: the survey's score
    score: int | None = None


class LinkSigner:
    """Makes and checks the links of one deployment (one secret, one public base URL)."""

    def __init__(
        self,
        *,
        secret: str,
        base_url: str,
        max_age_s: dict[Purpose, int] | None = None,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the link secret must be at least 16 characters")
        self._base = base_url.rstrip("/")
        self._max_age = {**DEFAULT_MAX_AGE_S, **(max_age_s or {})}
        self._serializers = {
            purpose: _Serializer(secret, salt=f"tenure.dispatcher.{purpose}") for purpose in Purpose
        }

    def is_own(self, url: str) -> bool:
        """A link of ours (unsubscribe, survey…), which the click tracker leaves as is."""
        return url.startswith(f"{self._base}/t/")

    def token(self, purpose: Purpose, payload: LinkPayload) -> str:
        body: list[Any] = [payload.dispatch_id]
        if payload.target is not None or payload.score is not None:
            body.append(payload.target)
        if payload.score is not None:
            body.append(payload.score)
        return str(self._serializers[purpose].dumps(body))

    def url(self, purpose: Purpose, payload: LinkPayload) -> str:
        return f"{self._base}{PATHS[purpose]}/{quote(self.token(purpose, payload), safe='')}"

    def verify(self, purpose: Purpose, token: str) -> LinkPayload:
        """The payload of a token of ``purpose``; :class:`LinkRefused` otherwise."""
        try:
            body = self._serializers[purpose].loads(token, max_age=self._max_age[purpose])
        except SignatureExpired:
            raise LinkRefused("the link has expired") from None
        except BadSignature:
            raise LinkRefused("the link is not valid") from None
        if not isinstance(body, list) or not body or not isinstance(body[0], str):
            raise LinkRefused("the link is not valid")
        target = body[1] if len(body) > 1 and isinstance(body[1], str) else None
        score = body[2] if len(body) > 2 and isinstance(body[2], int) else None
        return LinkPayload(body[0], target, score)

    # the links a message carries ----------------------------------------------------

    def open_pixel(self, dispatch_id: str) -> str:
        return self.url(Purpose.OPEN, LinkPayload(dispatch_id))

    def click(self, dispatch_id: str, target: str) -> str:
        return self.url(Purpose.CLICK, LinkPayload(dispatch_id, target))

    def unsubscribe(self, dispatch_id: str) -> str:
        return self.url(Purpose.UNSUBSCRIBE, LinkPayload(dispatch_id))

    def preferences(self, dispatch_id: str) -> str:
        return self.url(Purpose.PREFERENCES, LinkPayload(dispatch_id))

    def survey(self, dispatch_id: str, kind: str, score: int) -> str:
        return self.url(Purpose.SURVEY, LinkPayload(dispatch_id, kind, score))

    def push_opened(self, dispatch_id: str) -> str:
        return self.url(Purpose.PUSH_OPENED, LinkPayload(dispatch_id))
