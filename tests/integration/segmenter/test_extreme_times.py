"""Events at the ends of the datetime range (not from ingest, which bounds them) are folded,
and the customer's later events too: every time read back is aware."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.integration.segmenter.conftest import START, Stack
from tests.integration.segmenter.events import event, run_id


async def test_year_one_and_year_9999_leave_nothing_naive(stack: Stack) -> None:
    customer = f"c-{run_id()}"
    await stack.send(
        event("track", customer, datetime(1, 1, 1, tzinfo=UTC), event="Ancient"),
        event("identify", customer, datetime.max.replace(tzinfo=UTC), traits={"plan": "x"}),
    )
    await stack.profile(customer, until=lambda p: len(p["events"]) == 1)
    # the same customer's later events of that name are still applied
    await stack.send(event("track", customer, START - timedelta(days=1), event="Ancient"))
    profile = await stack.profile(
        customer, until=lambda p: p["events"] and p["events"][0]["count"] == 2
    )
    first_seen = datetime.fromisoformat(profile["first_seen_at"])
    assert first_seen.utcoffset() == timedelta(0)
    assert first_seen < datetime(1, 1, 2, tzinfo=UTC)
    (stat,) = profile["events"]
    for field in ("first_at", "last_at"):
        if field in stat:
            assert datetime.fromisoformat(stat[field]).utcoffset() == timedelta(0), stat
