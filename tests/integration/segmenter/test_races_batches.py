"""A batch of events racing another writer of the same customer: an alias merge
applied by another replica, or a sweep.

``alias`` is keyed by the known id and the anonymous id's events by the anonymous
id, so the two land on different partitions and may be applied at the same time
by two replicas. Whichever commits first, the anonymous history must end up on
the known profile and nothing may stay behind under the anonymous id.
"""

from __future__ import annotations

from datetime import timedelta

from services.segmenter.catalog_cache import CatalogCache
from services.segmenter.consumer import EventBatchHandler
from services.segmenter.metrics import BATCHES_RERUN
from services.segmenter.sweeper import MembershipSweep
from shared.events.customer_events import CustomerEvent
from shared.kafka.consumer import Record
from tests.integration.segmenter.events import event, run_id
from tests.integration.segmenter.replicas import (
    NOW,
    Gate,
    Replicas,
    batch,
)


def viewed(anonymous: str) -> list[Record[CustomerEvent]]:
    """A batch of one event of the anonymous id."""
    return batch(event("track", None, NOW, anonymousId=anonymous, event="Product Viewed"))


def alias(known: str, anonymous: str) -> list[Record[CustomerEvent]]:
    return batch(event("alias", known, NOW, previousId=anonymous))


async def assert_merged(replicas: Replicas, known: str, anonymous: str, *, views: int) -> None:
    """Every view is on the known profile; nothing is left under the anonymous id."""
    assert await replicas.stats(known) == {"Product Viewed": views}
    assert await replicas.stats(anonymous) == {}
    assert await replicas.profile_ids(known, anonymous) == {known}


async def test_a_merge_after_an_uncommitted_first_event_of_the_anonymous_id(
    replicas: Replicas,
) -> None:
    """The anonymous id's first event is written but not committed when the alias
    comes: the merge must wait for it and take it along."""
    known, anonymous = f"u-{run_id()}", f"anon-{run_id()}"
    await replicas.first(batch(event("identify", known, NOW, traits={"plan": "pro"})))
    await Gate.timer(replicas.url, anonymous).interleave(
        replicas.second(viewed(anonymous)), replicas.first(alias(known, anonymous))
    )

    await assert_merged(replicas, known, anonymous, views=1)


async def test_an_event_of_the_anonymous_id_during_an_uncommitted_merge(
    replicas: Replicas,
) -> None:
    """The merge is written but not committed when the anonymous id's event comes:
    the event must land on the known profile, not on a new anonymous one."""
    known, anonymous = f"u-{run_id()}", f"anon-{run_id()}"
    await replicas.first(batch(event("identify", known, NOW, traits={"plan": "pro"})))
    await replicas.second(viewed(anonymous))
    reruns = BATCHES_RERUN._value.get()
    await Gate.timer(replicas.url, known).interleave(
        replicas.first(alias(known, anonymous)), replicas.second(viewed(anonymous))
    )

    await assert_merged(replicas, known, anonymous, views=2)
    assert BATCHES_RERUN._value.get() == reruns + 1  # the anonymous batch, once


async def test_a_first_event_of_the_anonymous_id_during_an_uncommitted_merge(
    replicas: Replicas,
) -> None:
    """As above, when the anonymous id had no profile yet (no row to wait on)."""
    known, anonymous = f"u-{run_id()}", f"anon-{run_id()}"
    await replicas.first(batch(event("identify", known, NOW, traits={"plan": "pro"})))
    await Gate.timer(replicas.url, known).interleave(
        replicas.first(alias(known, anonymous)), replicas.second(viewed(anonymous))
    )

    await assert_merged(replicas, known, anonymous, views=1)


async def test_a_sweep_and_a_batch_of_the_same_customer_do_not_deadlock(
    replicas: Replicas,
) -> None:
    """A batch and a sweep both move the customer from one segment to another. The
    batch takes the customer's timer before it writes memberships, so a sweep either
    claimed the timer first (and the batch waits for it) or skips it; writing the
    memberships first let the sweep claim the timer in between, and each then
    waited for the other."""
    customer = f"u-{run_id()}"
    await replicas.first(
        batch(
            event("track", customer, NOW - timedelta(days=29), event="Signed In"),
            event("track", customer, NOW - timedelta(days=6), event="Signed In"),
        )
    )
    assert await replicas.memberships(customer) == ["new-customers"]
    later = NOW + timedelta(days=2)  # no longer new, 8 days inactive
    engine = replicas.engines[1]
    handler = EventBatchHandler(engine=engine, catalogs=CatalogCache(engine), clock=lambda: later)
    sweeper = MembershipSweep(
        engine=replicas.engines[0], catalogs=CatalogCache(replicas.engines[0]), clock=lambda: later
    )
    await Gate.member(replicas.url, "new-customers", customer).interleave(
        handler(batch(event("identify", customer, later, traits={"plan": "pro"}))),
        sweeper.sweep_once(),
    )

    assert await replicas.memberships(customer) == ["inactive-7d"]
