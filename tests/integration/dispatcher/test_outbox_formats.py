"""One format per message: every message the dispatcher queues (outcomes of every
status, engagement events), over a workload of quiet hours, consent, erasure and
retries, reads back through the registry's decoder of its topic, and the topic's
encoder writes the same JSON again."""

from __future__ import annotations

import asyncio

from shared.events.dispatch_outcomes import DispatchOutcome, Status
from tests.integration.dispatcher import test_channels as channels
from tests.integration.dispatcher import test_policies as policies
from tests.integration.dispatcher.conftest import Stack
from tests.support.outbox import read_back


async def test_every_message_the_dispatcher_queues_reads_back_through_the_registry(
    stack: Stack,
) -> None:
    await policies.test_quiet_hours_defer_to_the_customers_morning_and_the_timer_fires(stack)
    await policies.test_consent_and_erasure(stack)
    await stack.template("everywhere", **channels.EVERYWHERE)
    await channels.test_retries_run_out_into_a_failed_outcome(stack)
    await asyncio.sleep(0.5)  # the tails read what was published

    outcomes = [read_back(r) for r in stack.outcomes.records]
    assert all(isinstance(o, DispatchOutcome) for o in outcomes)
    assert {o.status for o in outcomes} >= {
        Status.DEFERRED,
        Status.SENT,
        Status.SUPPRESSED,
        Status.FAILED,
    }
    for record in stack.events.records:
        read_back(record)
