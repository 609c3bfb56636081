"""How far a batch folded each profile: the position the segmenter stamps on every
``profiles`` message and on the changes made from events (Freshness)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.segmenter.consumer import folded_positions, positions
from shared.events.base import Position
from shared.events.customer_events import CustomerEvent
from shared.kafka.consumer import Record

AT = datetime(2026, 6, 1, tzinfo=UTC)


def record(customer: str, partition: int, offset: int) -> Record[CustomerEvent]:
    event = CustomerEvent.model_validate(
        {
            "type": "track",
            "event": "X",
            "messageId": f"m-{customer}-{offset}",
            "userId": customer,
            "timestamp": AT,
            "receivedAt": AT,
        }
    )
    return Record("customer.events", partition, offset, customer.encode(), event, 0)


def test_each_customer_gets_the_last_position_of_the_batch() -> None:
    batch = [record("a", 1, 10), record("b", 2, 4), record("a", 1, 12), record("a", 1, 11)]
    assert positions(batch) == {
        "a": Position(partition=1, offset=12),
        "b": Position(partition=2, offset=4),
    }


def test_a_merged_id_lends_its_position_only_to_a_profile_without_its_own() -> None:
    at = {
        "known": Position(partition=1, offset=5),
        "anon": Position(partition=2, offset=50),
        "anon2": Position(partition=0, offset=7),
    }
    merged = {"anon": "known", "anon2": "other"}
    assert folded_positions(at, merged) == {
        "known": Position(partition=1, offset=5),  # its own wins, on its own partition
        "other": Position(partition=0, offset=7),
    }
