"""Signed offer codes: the offer's value and expiry inside the code, verifiable offline.

A code is 20 bytes written in Crockford's base32 (no I, L, O, U; case and dashes do not
matter when read back), in four groups of eight after an optional prefix::

    SPRING-2X4Q9M1C-7RZ0K3VD-H8N5TQ2W-B6E1F0YA

bytes   what
0       version (2 bits) · key id (3 bits) · value kind (3 bits)
1–2     expiry, days since 1970-01-01 (UTC; valid through the end of that day)
3–5     value: percent (1–100) or an amount in minor units (cents)
6–11    nonce: derived from the dispatch, so one dispatch always gets the same code
12–19   HMAC-SHA256 over the prefix and bytes 0–11, truncated to 64 bits

Why not itsdangerous: its tokens carry a JSON payload in URL-safe base64 (≈ 60+ characters,
case-sensitive), which is fine in a link but not for a code a customer types at a checkout.
64 bits of MAC leave an online guesser nothing. The 48-bit nonce is keyed, so nobody can
predict another customer's code; among 10 million codes of one value and expiry the
expected number of equal pairs is ``n² / 2^49`` ≈ 0.2 (such a pair is still a valid
offer, only its redemption is attributed to one of the two dispatches).
Keys rotate by id: a verifier holds every key still in use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import IntEnum

VERSION = 1
_EPOCH = date(1970, 1, 1)
_STD = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_CROCKFORD = str.maketrans(_STD, _CROCKFORD)
_FROM_CROCKFORD = str.maketrans(_CROCKFORD, _STD)
#: what a person may type for a Crockford digit
_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_MAX_VALUE = (1 << 24) - 1


class ValueKind(IntEnum):
    PERCENT = 1
    AMOUNT = 2  # minor units of the shop's currency


class InvalidCode(ValueError):
    """The code is malformed, signed by no key we hold, or tampered with."""


@dataclass(frozen=True)
class Offer:
    kind: ValueKind
    value: int
    expires_on: date  # the last valid day (UTC)

    def __post_init__(self) -> None:
        if not 1 <= self.value <= _MAX_VALUE:
            raise ValueError(f"value must be 1..{_MAX_VALUE}")
        if self.kind is ValueKind.PERCENT and self.value > 100:
            raise ValueError("a percent offer is at most 100")
        if not 0 <= (self.expires_on - _EPOCH).days < 1 << 16:
            raise ValueError("expiry out of range")


@dataclass(frozen=True)
class Verified:
    offer: Offer
    key_id: int
    nonce: bytes
    expired: bool


def issue(
    *, offer: Offer, keys: Mapping[int, bytes], key_id: int, seed: str, prefix: str = ""
) -> str:
    """The code of ``offer`` for ``seed`` (a dispatch id): the same inputs give the same code."""
    if not 0 <= key_id < 8:
        raise ValueError("key id is 0..7")
    if prefix and not prefix.isalnum():
        raise ValueError("a prefix is letters and digits")
    key = keys[key_id]
    nonce = hmac.new(key, b"nonce\0" + seed.encode(), hashlib.sha256).digest()[:6]
    head = bytes([(VERSION << 6) | (key_id << 3) | int(offer.kind)])
    body = (
        head
        + (offer.expires_on - _EPOCH).days.to_bytes(2, "big")
        + offer.value.to_bytes(3, "big")
        + nonce
    )
    raw = body + _mac(key, prefix.upper(), body)
    text = base64.b32encode(raw).decode().translate(_TO_CROCKFORD)
    groups = "-".join(text[i : i + 8] for i in range(0, 32, 8))
    return f"{prefix.upper()}-{groups}" if prefix else groups


def verify(code: str, *, keys: Mapping[int, bytes], today: date | None = None) -> Verified:
    """Check a code typed by a person; raises :class:`InvalidCode`. An expired code verifies
    (``expired`` is set) so a checkout can say why it is refused."""
    parts = code.strip().upper().split("-")
    prefix = parts[0] if len(parts) == 5 else ""
    text = "".join(parts[1:] if prefix else parts).translate(_ALIASES)
    if len(text) != 32 or any(ch not in _CROCKFORD for ch in text):
        raise InvalidCode("not an offer code")
    raw = base64.b32decode(text.translate(_FROM_CROCKFORD))
    body, mac = raw[:12], raw[12:]
    version, key_id, kind = body[0] >> 6, (body[0] >> 3) & 7, body[0] & 7
    if version != VERSION or key_id not in keys:
        raise InvalidCode("unknown version or key")
    if not hmac.compare_digest(mac, _mac(keys[key_id], prefix, body)):
        raise InvalidCode("bad signature")
    try:
        offer = Offer(
            kind=ValueKind(kind),
            value=int.from_bytes(body[3:6], "big"),
            expires_on=_EPOCH + timedelta(days=int.from_bytes(body[1:3], "big")),
        )
    except ValueError as exc:  # signed by us, so only a bug or a leaked key gets here
        raise InvalidCode(str(exc)) from exc
    today = today or datetime.now(UTC).date()
    return Verified(offer=offer, key_id=key_id, nonce=body[6:12], expired=today > offer.expires_on)


def normalise(code: str) -> str:
    """The canonical text of a signed code as typed (upper case, aliases mapped, grouped),
    for lookups; any other text upper-cased and stripped (pool codes)."""
    cleaned = code.strip().upper()
    parts = cleaned.split("-")
    prefix = parts[0] if len(parts) == 5 else ""
    text = "".join(parts[1:] if prefix else parts).translate(_ALIASES)
    if len(text) != 32 or any(ch not in _CROCKFORD for ch in text):
        return cleaned
    groups = "-".join(text[i : i + 8] for i in range(0, 32, 8))
    return f"{prefix}-{groups}" if prefix else groups


def _mac(key: bytes, prefix: str, body: bytes) -> bytes:
    return hmac.new(key, b"offer\0" + prefix.encode() + b"\0" + body, hashlib.sha256).digest()[:8]
