"""One format per message: every message the journey queues (run events, dispatch
requests, trait updates), over a workload of sends, waits, engagement timeouts,
branches, splits, trait updates and an erasure, reads back through the registry's
decoder of its topic, and the topic's encoder writes the same JSON again."""

from __future__ import annotations

import asyncio

from shared.events.customer_events import CustomerEvent
from shared.events.dispatch_requests import DispatchRequest
from shared.events.journey_runs import JourneyRunEvent, RunEventKind
from tests.integration.journey import test_steps as steps
from tests.integration.journey.conftest import Stack
from tests.support.outbox import read_back


async def test_every_message_the_journey_queues_reads_back_through_the_registry(
    stack: Stack,
) -> None:
    await steps.test_the_not_opened_follow_up_and_a_failed_send(stack)
    await steps.test_branch_split_update_trait_and_wait_until(stack)
    await steps.test_an_erased_customer_leaves_every_journey(stack)
    await asyncio.sleep(0.5)  # the tails read what was published

    runs = [read_back(r) for r in stack.runs.records]
    requests = [read_back(r) for r in stack.requests.records]
    events = [read_back(r) for r in stack.traits.records]
    assert all(isinstance(r, JourneyRunEvent) for r in runs)
    assert {r.kind for r in runs} >= {
        RunEventKind.ENTERED,
        RunEventKind.STEP_REACHED,
        RunEventKind.WAITING,
        RunEventKind.EXITED,
    }
    assert requests and all(isinstance(r, DispatchRequest) for r in requests)
    traits = [e for e in events if isinstance(e, CustomerEvent) and e.type == "identify"]
    assert traits, "no trait update was published"
