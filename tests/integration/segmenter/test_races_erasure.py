"""An erasure racing the other writers of the customer: a batch of events, a sweep, a
backfill. It must leave nothing of the customer behind, and with suppression no
later profile either.
"""

from __future__ import annotations

from datetime import timedelta

from services.segmenter.backfill import backfill
from services.segmenter.catalog_cache import CatalogCache
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
    erase,
    pro_customer_and_segment,
)


def purchase(customer: str) -> list[Record[CustomerEvent]]:
    return batch(event("track", customer, NOW, event="Order Completed"))


async def assert_erased(replicas: Replicas, customer: str) -> None:
    assert await replicas.stats(customer) == {}
    assert await replicas.memberships(customer) == []
    assert await replicas.profile_ids(customer) == set()


async def test_an_erasure_during_an_uncommitted_batch_of_the_customer(
    replicas: Replicas,
) -> None:
    """The batch has written new statistics of the customer, uncommitted, when the
    erasure comes: the erasure must wait for them and delete them too."""
    customer = f"u-{run_id()}"
    await replicas.first(batch(event("identify", customer, NOW, traits={"plan": "pro"})))
    await Gate.timer(replicas.url, customer).interleave(
        replicas.second(purchase(customer)), erase(replicas, customer, suppress=False)
    )

    await assert_erased(replicas, customer)


async def test_a_batch_of_the_customer_during_an_uncommitted_erasure_with_suppression(
    replicas: Replicas,
) -> None:
    """The erasure (with suppression) holds the customer's rows when the batch comes:
    the batch must not make a new profile of a suppressed id."""
    customer = f"u-{run_id()}"
    await replicas.first(batch(event("identify", customer, NOW, traits={"plan": "pro"})))
    reruns = BATCHES_RERUN._value.get()
    await Gate.timer(replicas.url, customer).interleave(
        erase(replicas, customer, suppress=True), replicas.second(purchase(customer))
    )

    await assert_erased(replicas, customer)
    assert BATCHES_RERUN._value.get() == reruns + 1


async def test_an_erasure_during_an_uncommitted_sweep_of_the_customer(
    replicas: Replicas,
) -> None:
    """Time made the customer enter a segment, in a sweep not yet committed when the
    erasure comes: the erasure must delete that membership too."""
    customer = f"u-{run_id()}"
    await replicas.first(
        batch(event("track", customer, NOW - timedelta(days=6), event="Signed In"))
    )
    assert await replicas.memberships(customer) == ["new-customers"]
    engine = replicas.engines[1]
    later = NOW + timedelta(days=2)  # 8 days without activity: inactive-7d
    sweeper = MembershipSweep(engine=engine, catalogs=CatalogCache(engine), clock=lambda: later)
    swept, _ = await Gate.membership(replicas.url, "inactive-7d", customer).interleave(
        sweeper.sweep_once(), erase(replicas, customer, suppress=False)
    )

    assert swept == 1
    await assert_erased(replicas, customer)


async def test_an_erasure_during_an_uncommitted_backfill(replicas: Replicas) -> None:
    """A new segment's backfill has made the customer a member, uncommitted, when the
    erasure comes: the erasure must wait for it and delete that membership too."""
    customer = f"u-{run_id()}"
    catalog = await pro_customer_and_segment(replicas, customer)
    applied, _ = await Gate.membership(replicas.url, "pro", customer).interleave(
        backfill(replicas.engines[1], catalog, [catalog.by_id["pro"]], now=NOW),
        erase(replicas, customer, suppress=False),
    )

    assert applied["pro"].entered == 1
    await assert_erased(replicas, customer)
