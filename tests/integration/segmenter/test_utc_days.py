"""Purchase days, rollup days and rule windows are UTC days, whatever offset a client sent
(ingest keeps the client's offset when it sent no ``sentAt``)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from services.segmenter.scoring import summarise_customer
from services.segmenter.scoring_job import purchase_summaries
from tests.integration.segmenter.conftest import ADMIN, START, Stack
from tests.integration.segmenter.events import event, run_id
from tests.integration.segmenter.test_segments import create, eventually_members, members, tagged

ORDER = "Order Completed"


async def test_one_utc_day_sent_in_two_offsets_is_one_purchase_occasion(stack: Stack) -> None:
    """22:00-05:00 on the 30th and 10:00Z on the 31st are both 31 May in UTC: one occasion
    of 30.0, as :func:`summarise_customer` (the models' own convention) says; before, the
    local day made them two."""
    run = run_id()
    buyer = f"offsets-{run}"
    purchases = [
        (START - timedelta(days=10), 10.0),
        (datetime.fromisoformat("2026-05-30T22:00:00-05:00"), 5.0),
        (datetime.fromisoformat("2026-05-31T10:00:00+00:00"), 25.0),
    ]
    await stack.send(
        event("identify", buyer, START - timedelta(days=11), traits={"run": run}),
        *[
            event("track", buyer, at, event=ORDER, properties={"revenue": value})
            for at, value in purchases
        ],
    )
    await stack.profile(
        buyer, until=lambda p: {e["event"]: e["count"] for e in p["events"]} == {ORDER: 3}
    )
    expected = summarise_customer(buyer, purchases, now=stack.clock.now, last_seen=purchases[2][0])
    assert expected is not None
    assert (expected.frequency, expected.monetary) == (1.0, 30.0)
    async with stack.runtime.engine.connect() as conn:
        found = await purchase_summaries(conn, purchase_event=ORDER, now=stack.clock.now)
    ours = next(s for s in found if s.customer_id == buyer)
    assert (ours.frequency, ours.monetary, ours.total_value) == (1.0, 30.0, 40.0)

    fit = await stack.client.post("/v1/scores/refit", headers=ADMIN)
    assert fit.status_code == 200, fit.text
    explanation = (await stack.profile(buyer))["scores"]["explanation"]
    assert (explanation["frequency"], explanation["monetary"]) == (1, 30.0)


async def test_a_window_counts_the_utc_day_on_both_sides_of_midnight(stack: Stack) -> None:
    """``within_days: 1`` is today in UTC. At 21:00-05:00 on 31 May it is already 1 June in
    UTC (inside); at 00:30+02:00 on 1 June it is still 31 May in UTC (outside)."""
    run = run_id()
    late_west, early_east = f"west-{run}", f"east-{run}"
    segment = f"bought-today-{run}"
    await create(
        stack,
        segment,
        tagged(
            run, {"kind": "event_count", "event": ORDER, "op": "gte", "count": 1, "within_days": 1}
        ),
    )
    stamps = {
        late_west: datetime.fromisoformat("2026-05-31T21:00:00-05:00"),  # 1 June 02:00Z
        early_east: datetime.fromisoformat("2026-06-01T00:30:00+02:00"),  # 31 May 22:30Z
    }
    now = stack.clock.now
    assert now.date().isoformat() == "2026-06-01" and now.hour == 12
    for customer, at in stamps.items():
        await stack.send(
            event("identify", customer, at - timedelta(days=1), traits={"run": run}),
            event("track", customer, at, event=ORDER, properties={"revenue": 1}),
        )
    for customer in stamps:
        await stack.profile(customer, until=lambda p: p["events"])
    await eventually_members(stack, segment, {late_west})
    await asyncio.sleep(0.3)
    assert await members(stack, segment) == {late_west}

    # the day leaves the window at UTC midnight (02:00 local in the east, 19:00 in the west)
    stack.clock.advance(hours=11, minutes=59)
    await asyncio.sleep(0.3)
    assert await members(stack, segment) == {late_west}
    stack.clock.advance(minutes=2)
    await eventually_members(stack, segment, set())
