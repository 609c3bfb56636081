"""Secrets (write keys, admin tokens) are configured as SHA-256 digests.

They are random tokens, for which one SHA-256 is the right strength (a slow
password hash would only add latency); the service never holds a usable secret.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenDigests:
    """A set of accepted tokens, by digest; each check takes the same time."""

    def __init__(self, digests: Iterable[str]) -> None:
        self._digests = tuple(d.strip().lower() for d in digests if d.strip())

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, token: str | None) -> bool:
        if not token:
            return False
        digest = hash_token(token)
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(digest, known)
        return matched
