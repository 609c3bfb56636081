"""One format per message: every message the segmenter queues — packs written by the
event path, the API and the refit, and rows written set-based in SQL by the sweep and
the backfill — reads back through the registry's decoder of its topic, and the topic's
encoder writes the same JSON again (nothing missing, renamed or extra), so the writers
cannot drift apart. The journey's, the dispatcher's and metrics' have the same test in
their directories."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from sqlalchemy import func, select

from services.segmenter.models import outbox
from tests.integration.segmenter.conftest import ADMIN, START, Stack
from tests.integration.segmenter.events import event, run_id
from tests.integration.segmenter.test_segments import create, eventually_members, tagged
from tests.support.outbox import read_back


async def relayed(stack: Stack) -> None:
    """Until the outbox is empty: everything queued so far is on the topics."""
    for _ in range(400):
        async with stack.runtime.engine.connect() as conn:
            if not await conn.scalar(select(func.count()).select_from(outbox)):
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the outbox did not empty")


async def test_every_message_the_segmenter_queues_reads_back_through_its_model(
    stack: Stack,
) -> None:
    run = run_id()
    early, later, anonymous = f"early-{run}", f"later-{run}", f"anon-{run}"
    buyers = f"buyers-{run}"
    everyone = f"everyone-{run}"
    await stack.send(
        event("identify", early, START - timedelta(days=3), traits={"run": run, "plan": "pro"}),
        event("track", early, START - timedelta(days=2), event="Order Completed", revenue=30),
    )
    await stack.profile(early, until=lambda p: p["events"])
    # a backfill (SQL rows): ``early`` enters
    purchase = {"kind": "event_count", "event": "Order Completed", "op": "gte", "count": 1}
    await create(stack, buyers, tagged(run, {**purchase, "within_days": 30}))
    # the event path (packs): ``later`` enters, profiles are published
    await stack.send(
        event("identify", later, START, traits={"run": run, "email": "l@example.com"}),
        event("track", later, START, event="Order Completed", revenue=12.5),
        event("track", None, START, anonymousId=anonymous, event="Product Viewed"),
    )
    await eventually_members(stack, buyers, {early, later})
    # an alias (packs): the anonymous profile is merged, a deletion is published
    await stack.send(event("alias", later, START, previousId=anonymous))
    await stack.profile(later, until=lambda p: anonymous in p["aliases"])
    # a refit (packs and SQL rows)
    assert (await stack.client.post("/v1/scores/refit", headers=ADMIN)).status_code == 200
    # time passing (SQL rows of the sweep): both leave the 30-day window
    stack.clock.advance(days=31)
    await eventually_members(stack, buyers, set())
    # a backfill entering both, then an erasure and a deletion (packs)
    await create(stack, everyone, {"kind": "trait", "trait": "run", "op": "eq", "value": run})
    erased = await stack.client.delete(f"/v1/profiles/{early}", headers=ADMIN)
    assert erased.status_code == 200, erased.text
    deleted = await stack.client.delete(f"/v1/segments/{everyone}", headers=ADMIN)
    assert deleted.status_code == 204, deleted.text
    await relayed(stack)
    await asyncio.sleep(0.5)  # the tails read what was published

    changes = [read_back(r) for r in stack.changes.records]
    updates = [read_back(r) for r in stack.profiles.records]
    ours = [c for c in changes if c.customer_id in (early, later)]
    seen = Counter((c.segment_id, c.customer_id, c.change.value, c.cause) for c in ours)
    assert seen == {
        (buyers, early, "entered", "segment_edit"): 1,  # backfill, SQL
        (buyers, later, "entered", "event"): 1,  # event path, pack
        (buyers, early, "exited", "time"): 1,  # sweep, SQL
        (buyers, later, "exited", "time"): 1,
        (everyone, early, "entered", "segment_edit"): 1,
        (everyone, later, "entered", "segment_edit"): 1,
        (everyone, early, "exited", "customer_deleted"): 1,  # erasure, pack
        (everyone, later, "exited", "segment_edit"): 1,  # deletion, pack
    }
    assert {(u.customer_id, u.deleted) for u in updates} >= {
        (early, False),
        (later, False),
        (anonymous, True),  # merged away
        (early, True),  # erased
    }
