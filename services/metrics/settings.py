"""Metrics settings: ``TENURE_METRICS_*`` beside the shared ones."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from shared.settings import AdminApiGroup, ServiceSettings

DEFAULT_PORT = 8005


class MetricsGroup(AdminApiGroup):
    #: Kafka consumer group of the metrics consumer (replicas share it)
    consumer_group: str = "tenure-metrics"
    #: the most records folded in one transaction
    max_batch_records: int = Field(default=5_000, ge=1)
    #: the track event whose ``revenue`` (else ``value``) is an order
    purchase_event: str = "Order Completed"
    #: track events that count as a conversion of the last message sent before them,
    #: comma-separated (default: the purchase event)
    goal_events: str = ""
    #: a goal event converts the last message sent at most this long before it
    attribution_window_hours: float = Field(default=72.0, gt=0)
    #: how often experiments are evaluated (verdicts, promotions) and KPI gauges refreshed
    evaluate_interval_s: float = Field(default=60.0, ge=0)
    #: experiment policy (see services/metrics/stats.py)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    #: τ of the mixture sequential test (mSPRT): the effect size it is most sensitive to
    mixture_tau: float = Field(default=0.02, gt=0)
    #: customers per arm before an experiment may be decided
    min_exposed: int = Field(default=200, ge=1)
    #: conversions per arm before an experiment may be decided
    min_converted: int = Field(default=20, ge=0)
    #: absolute difference in conversion rate under which arms are called equivalent
    equivalence_margin: float = Field(default=0.01, gt=0)
    #: guardrail: the most a winner may raise the unsubscribe rate (absolute)
    max_unsubscribe_increase: float = Field(default=0.005, ge=0)
    #: guardrail: the most a winner may raise the complaint rate (absolute)
    max_complaint_increase: float = Field(default=0.001, ge=0)
    #: processed message ids are kept this long for deduplication
    dedup_retention_days: int = Field(default=7, ge=1)

    @property
    def goals(self) -> frozenset[str]:
        names = {n.strip() for n in self.goal_events.split(",") if n.strip()}
        return frozenset(names or {self.purchase_event})


class MetricsSettings(ServiceSettings):
    metrics: MetricsGroup = MetricsGroup()


@lru_cache
def get_settings() -> MetricsSettings:
    return MetricsSettings()
