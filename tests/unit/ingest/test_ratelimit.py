"""Token buckets per write key: the burst, the refill, debt for big batches, settings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.ratelimit import Limit, RateLimiter
from services.ingest.settings import IngestGroup

A, B = "a" * 64, "b" * 64


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(Limit(rate=10, burst=5), {}, clock)
    assert [limiter.take(A, 1) for _ in range(5)] == [None] * 5
    wait = limiter.take(A, 1)
    assert wait == pytest.approx(0.1)
    clock.now += 0.05
    assert limiter.take(A, 1) == pytest.approx(0.05)  # a refusal takes nothing
    assert limiter.take(B, 1) is None  # another key has its own bucket
    clock.now += 0.05
    assert limiter.take(A, 1) is None
    assert limiter.take(A, 1) is not None


def test_a_batch_larger_than_the_burst_waits_for_a_full_bucket_then_owes() -> None:
    clock = Clock()
    limiter = RateLimiter(Limit(rate=10, burst=20), {}, clock)
    assert limiter.take(A, 100) is None  # full bucket: admitted, 80 tokens in debt
    assert limiter.take(A, 1) == pytest.approx(8.1)
    clock.now += 10  # 100 tokens refilled: back to 20
    assert limiter.take(A, 100) is None


def test_per_key_limits_and_exemptions() -> None:
    clock = Clock()
    limiter = RateLimiter(Limit(1, 1), {A: Limit(1000, 1000), B: None}, clock)
    assert all(limiter.take(A, 1) is None for _ in range(1000))
    assert all(limiter.take(B, 1) is None for _ in range(5000))
    c = "c" * 64
    assert limiter.take(c, 1) is None
    assert limiter.take(c, 1) is not None
    assert not RateLimiter(None, {}).enabled
    assert RateLimiter(None, {A: Limit(1, 1)}).enabled


@given(
    st.floats(0.5, 1000),
    st.floats(1, 500),
    st.lists(st.tuples(st.floats(0, 2), st.integers(1, 300)), max_size=60),
)
@settings(max_examples=200)
def test_admitted_events_never_exceed_burst_plus_rate_times_time_plus_last_debt(
    rate: float, burst: float, requests: list[tuple[float, int]]
) -> None:
    clock = Clock()
    limiter = RateLimiter(Limit(rate, burst), {}, clock)
    admitted = 0
    biggest = 0
    for gap, cost in requests:
        clock.now += gap
        wait = limiter.take(A, cost)
        if wait is None:
            admitted += cost
            biggest = max(biggest, cost)
        else:
            assert wait > 0
            clock.now += wait + 1e-9  # waiting as told is enough
            assert limiter.take(A, cost) is None
            admitted += cost
            biggest = max(biggest, cost)
    elapsed = clock.now
    # a request larger than the burst may overdraw by its excess, once
    assert admitted <= burst + rate * elapsed + max(0, biggest - burst) + 1e-6


def test_settings_parse_and_refuse() -> None:
    group = IngestGroup(rate_limit="100/500", rate_limits=f"{A}=5, {B}=none")
    limiter = group.rate_limiter()
    assert limiter.enabled
    assert Limit.parse("7") == Limit(7, 7)
    assert Limit.parse("0.5") == Limit(0.5, 1)
    for bad in ("0", "-1", "x", "10/0.5", "inf"):
        with pytest.raises(ValueError):
            IngestGroup(rate_limit=bad)
    with pytest.raises(ValueError):
        IngestGroup(rate_limits="short=5")
