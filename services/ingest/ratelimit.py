"""Per-write-key token buckets, in this process.

A key's bucket holds up to ``burst`` tokens and refills at ``rate`` tokens a
second; an event costs one token. A request of ``n`` events is admitted when the
bucket holds ``min(n, burst)`` tokens, and then takes all ``n``: a batch larger
than the burst is admitted from a full bucket and leaves it in debt, so the
long-run rate holds for any request size and no request is refused forever.

The buckets live in one process: with ``P`` processes (uvicorn workers,
replicas, hosts) behind a load balancer a key may send up to ``P × rate``.
Configure ``rate`` per process as the key's total divided by ``P``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limit:
    rate: float  # tokens (events) a second
    burst: float  # bucket size

    @classmethod
    def parse(cls, text: str) -> Limit:
        """``rate`` or ``rate/burst``; the burst defaults to one second's worth (at least 1)."""
        rate_text, _, burst_text = text.partition("/")
        rate = float(rate_text)
        burst = float(burst_text) if burst_text else max(rate, 1.0)
        if not (rate > 0 and burst >= 1) or math.isinf(rate) or math.isinf(burst):
            raise ValueError(f"a rate limit needs rate > 0 and burst >= 1, not {text!r}")
        return cls(rate, burst)


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class RateLimiter:
    """Buckets by key digest; keys without a limit of their own get ``default`` (None: none)."""

    def __init__(
        self,
        default: Limit | None,
        per_key: dict[str, Limit | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._default = default
        self._per_key = {digest.lower(): limit for digest, limit in per_key.items()}
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        #: whether any key is limited (checked on every request, so computed once)
        self.enabled = default is not None or any(self._per_key.values())

    def take(self, digest: str, cost: int) -> float | None:
        """Take ``cost`` tokens: None when admitted, else the seconds to wait before retrying."""
        limit = self._per_key.get(digest, self._default)
        if limit is None:
            return None
        now = self._clock()
        bucket = self._buckets.get(digest)
        if bucket is None:
            bucket = self._buckets[digest] = _Bucket(limit.burst, now)
        else:
            elapsed = now - bucket.updated
            bucket.tokens = min(limit.burst, bucket.tokens + elapsed * limit.rate)
            bucket.updated = now
        needed = min(float(cost), limit.burst)
        if bucket.tokens >= needed:
            bucket.tokens -= cost
            return None
        return (needed - bucket.tokens) / limit.rate
