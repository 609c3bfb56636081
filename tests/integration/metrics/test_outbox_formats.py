"""One format per message: the experiment decisions metrics queues read back through
the registry's decoder of their topic, and the topic's encoder writes the same JSON
again."""

from __future__ import annotations

import asyncio

from shared.events.experiment_decisions import ExperimentDecision, Verdict
from tests.integration.metrics import test_messaging as messaging
from tests.integration.metrics.conftest import Stack
from tests.support.outbox import read_back


async def test_every_message_metrics_queues_reads_back_through_the_registry(
    stack: Stack,
) -> None:
    await messaging.test_split_verdict_and_promotion(stack)
    await asyncio.sleep(0.5)  # the tail read what was published

    decisions = [read_back(r) for r in stack.decisions.records]
    assert all(isinstance(d, ExperimentDecision) for d in decisions)
    assert Verdict.WINNER in {d.verdict for d in decisions}
