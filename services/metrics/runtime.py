"""The metrics service's parts on a :class:`~shared.runtime.ServiceRuntime`: the
consumer of every topic, the experiment evaluator (which also refreshes the KPI
gauges), the claims cleanup and the outbox relay of ``experiment.decisions``."""

from __future__ import annotations

from datetime import date, timedelta

from services.metrics import queries
from services.metrics.consumer import DECODERS, MetricsBatchHandler
from services.metrics.experiments import evaluate_all
from services.metrics.metrics import (
    ACTIVE_CUSTOMERS,
    CHURN_RATE,
    LTV_TO_DATE,
    OUTBOX_BACKLOG,
    REPEAT_PURCHASE_RATE,
)
from services.metrics.models import outbox, outbox_relayed, processed_messages
from services.metrics.periods import period_start, shift_period
from services.metrics.settings import MetricsSettings
from services.metrics.stats import Policy
from shared.clock import Clock
from shared.db.engine import driver_connection, snapshot
from shared.db.transient import is_transient_db_error
from shared.runtime import OutboxParts
from shared.stopping import PeriodicJob


class Runtime:
    """What the lifespan builds and the routes use: the metrics service's parts, started
    and stopped by a :class:`~shared.runtime.ServiceRuntime`."""

    def __init__(self, settings: MetricsSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        group = settings.metrics
        parts = OutboxParts.build("metrics", settings, outbox, relayed=outbox_relayed, clock=clock)
        self.engine, self.publisher, self.relay = parts.engine, parts.publisher, parts.relay
        self.service = parts.service()
        self.policy = Policy(
            alpha=group.alpha,
            tau=group.mixture_tau,
            min_exposed=group.min_exposed,
            min_converted=group.min_converted,
            equivalence_margin=group.equivalence_margin,
            max_unsubscribe_increase=group.max_unsubscribe_increase,
            max_complaint_increase=group.max_complaint_increase,
        )
        self.runner = self.service.kafka_consumer(
            kafka=settings.kafka,
            group=group,
            decoders=DECODERS,
            handler=MetricsBatchHandler(
                engine=self.engine,
                purchase_event=group.purchase_event,
                goals=group.goals,
                attribution_window=timedelta(hours=group.attribution_window_hours),
            ),
            is_transient=is_transient_db_error,
        )
        self.service.loop(
            "evaluator",
            PeriodicJob(
                self.evaluate, name="experiment evaluation", interval_s=group.evaluate_interval_s
            ),
        )
        self.service.claims_cleanup(
            processed_messages, clock=clock, retention_days=group.dedup_retention_days
        )

    async def evaluate(self) -> int:
        """Evaluate every experiment, enqueue decisions, refresh the KPI gauges."""
        now = self.clock()
        enqueued = await evaluate_all(self.engine, policy=self.policy, now=now)
        if enqueued:
            self.relay.notify()
        await self._refresh_gauges(now.date())
        return enqueued

    async def _refresh_gauges(self, today: date) -> None:
        async with snapshot(self.engine) as conn:
            driver = await driver_connection(conn)
            for kind in ("day", "week", "month"):
                rows = await queries.activity(driver, kind=kind, start=today, end=today)
                ACTIVE_CUSTOMERS.labels(kind).set(rows[-1]["active"] if rows else 0)
                # the last complete period against the one before it
                last = shift_period(kind, period_start(kind, today), -1)
                done = await queries.activity(driver, kind=kind, start=last, end=last)
                churn = done[-1]["churn_rate"] if done else None
                CHURN_RATE.labels(kind).set(churn if churn is not None else float("nan"))
            ltv, repeat_rate, backlog = await queries.gauge_totals(driver)
            LTV_TO_DATE.set(ltv)
            REPEAT_PURCHASE_RATE.set(repeat_rate)
            OUTBOX_BACKLOG.set(backlog)
