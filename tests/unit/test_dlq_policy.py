"""DeadLetterPolicy.observe: the invalid-message ratio over a sliding window."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import DeadLetterLimitExceeded
from shared.kafka.dlq import DeadLetterPolicy


class NoPublisher:
    """observe never publishes; any use of the publisher is a failure."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"observe used the publisher ({name})")


def policy(**kwargs: Any) -> DeadLetterPolicy:
    return DeadLetterPolicy(NoPublisher(), **kwargs)  # type: ignore[arg-type]


def test_nothing_raises_below_min_seen_even_when_everything_is_invalid() -> None:
    p = policy(max_invalid_ratio=0.5, min_seen=20)
    for _ in range(19):
        p.observe(topic="t", valid=0, invalid=1)
    with pytest.raises(DeadLetterLimitExceeded):
        p.observe(topic="t", valid=0, invalid=1)


def test_raises_past_the_ratio_with_the_counts() -> None:
    p = policy(max_invalid_ratio=0.5, min_seen=20)
    p.observe(topic="orders", valid=9, invalid=0)
    with pytest.raises(DeadLetterLimitExceeded) as raised:
        p.observe(topic="orders", valid=0, invalid=11)
    error = raised.value
    assert (error.topic, error.invalid, error.seen, error.max_ratio) == ("orders", 11, 20, 0.5)
    assert "11 of the last 20 messages on orders" in str(error)


def test_exactly_at_the_ratio_is_allowed() -> None:
    p = policy(max_invalid_ratio=0.5, min_seen=20)
    p.observe(topic="t", valid=10, invalid=10)
    p.observe(topic="t", valid=1, invalid=1)
    with pytest.raises(DeadLetterLimitExceeded):
        p.observe(topic="t", valid=0, invalid=1)  # 12 of 23


def test_a_batch_without_invalid_messages_never_raises() -> None:
    p = policy(max_invalid_ratio=0.1, min_seen=5)
    p.observe(topic="t", valid=0, invalid=4)  # below min_seen
    p.observe(topic="t", valid=2, invalid=0)  # 4 of 6 invalid, but this batch is clean
    with pytest.raises(DeadLetterLimitExceeded):
        p.observe(topic="t", valid=0, invalid=1)


def test_only_the_last_window_messages_count() -> None:
    # Old valid messages slide out: 6 invalid of the last 10 trips the limit,
    # although 6 of all 16 seen would not.
    p = policy(max_invalid_ratio=0.5, window=10, min_seen=10)
    p.observe(topic="t", valid=10, invalid=0)
    with pytest.raises(DeadLetterLimitExceeded) as raised:
        p.observe(topic="t", valid=0, invalid=6)
    assert (raised.value.invalid, raised.value.seen) == (6, 10)


def test_old_invalid_messages_slide_out_of_the_window() -> None:
    p = policy(max_invalid_ratio=0.5, window=10, min_seen=10)
    p.observe(topic="t", valid=0, invalid=9)  # below min_seen
    p.observe(topic="t", valid=10, invalid=0)
    # 11 invalid of all 21 seen would trip the limit; 2 of the last 10 do not.
    p.observe(topic="t", valid=0, invalid=2)
    p.observe(topic="t", valid=0, invalid=3)  # 5 of the last 10: still at the limit
    with pytest.raises(DeadLetterLimitExceeded):
        p.observe(topic="t", valid=0, invalid=1)


def test_each_topic_has_its_own_window() -> None:
    p = policy(max_invalid_ratio=0.5, min_seen=20, window=100)
    p.observe(topic="healthy", valid=100, invalid=0)
    p.observe(topic="broken", valid=5, invalid=5)
    with pytest.raises(DeadLetterLimitExceeded) as raised:
        # 20 of the broken topic's 25: the healthy topic's 100 valid do not dilute it
        p.observe(topic="broken", valid=0, invalid=15)
    assert (raised.value.topic, raised.value.invalid, raised.value.seen) == ("broken", 20, 25)
    p.observe(topic="healthy", valid=10, invalid=1)  # the broken topic does not count here
