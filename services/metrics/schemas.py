"""The metrics API's bodies: what each route takes (``…Create`` / ``…Update``) and
answers (``…Public``), snake_case. Rates are ``null`` where their denominator is 0.

``from`` and ``to`` (the inclusive range of days answered) are Python keywords: the
fields are ``start`` and ``end``, written under their aliases.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from shared.validation import BoundedDate, FiniteFloat, SafeModel

PeriodKind = Literal["day", "week", "month"]
CohortKind = Literal["week", "month"]


class RangePublic(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    start: date = Field(alias="from", description="first day (UTC), inclusive")
    end: date = Field(alias="to", description="last day (UTC), inclusive")


# --- KPIs --------------------------------------------------------------------------------


class ActivityPeriod(BaseModel):
    period: date
    active: int
    new: int
    previous_active: int
    retained: int
    churned: int
    retention_rate: float | None
    churn_rate: float | None


class ActivityPublic(RangePublic):
    period: PeriodKind
    periods: list[ActivityPeriod]


class CohortPublic(BaseModel):
    cohort: date
    customers: int = Field(gt=0)
    #: per offset from the cohort's period; ``null`` for periods after the range
    active: list[int | None]
    retention: list[float | None]


class CohortsPublic(RangePublic):
    period: CohortKind
    cohorts: list[CohortPublic]


class RevenuePeriod(BaseModel):
    period: date
    orders: int
    revenue: float
    average_order_value: float | None
    active: int
    revenue_per_active_customer: float | None
    new_customers: int
    ltv_to_date: float | None


class RevenuePublic(RangePublic):
    period: PeriodKind
    periods: list[RevenuePeriod]


class CustomerCohort(BaseModel):
    cohort: date
    customers: int
    buyers: int
    repeat_purchase_rate: float | None
    revenue: float
    orders: int
    ltv: float | None


class CustomerValuePublic(BaseModel):
    customers: int
    buyers: int
    repeat_buyers: int
    repeat_purchase_rate: float | None
    revenue: float
    orders: int
    average_order_value: float | None
    revenue_per_customer: float | None
    revenue_per_buyer: float | None
    cohorts: list[CustomerCohort]


class Satisfaction(BaseModel):
    nps: float | None
    nps_answers: int
    promoters: int
    passives: int
    detractors: int
    csat: float | None
    csat_answers: int
    csat_mean: float | None


class SatisfactionPublic(RangePublic, Satisfaction):
    journey_id: str | None


class FunnelRates(BaseModel):
    delivery_rate: float | None
    bounce_rate: float | None
    open_rate: float | None
    click_rate: float | None
    click_to_open_rate: float | None
    unsubscribe_rate: float | None
    conversion_rate: float | None
    redemption_rate: float | None


class FunnelRow(TypedDict):
    """One group of the funnel: the dimensions it was grouped by (only those), every
    step's count, the by-reason breakdowns and the rates."""

    day: NotRequired[date]
    journey_id: NotRequired[str]
    step_id: NotRequired[str]
    variant: NotRequired[str]
    channel: NotRequired[str]
    requested: int
    deferred: int
    sent: int
    suppressed: int
    failed: int
    delivered: int
    bounced: int
    opened: int
    clicked: int
    unsubscribed: int
    complained: int
    converted: int
    redeemed: int
    suppressed_by_reason: dict[str, int]
    failed_by_reason: dict[str, int]
    deferred_by_reason: dict[str, int]
    rates: FunnelRates


class FunnelFilters(BaseModel):
    journey_id: str | None
    step_id: str | None
    variant: str | None
    channel: str | None


class FunnelPublic(RangePublic):
    group_by: list[str]
    filters: FunnelFilters
    rows: list[FunnelRow]


class UpliftArm(BaseModel):
    exposed: int
    #: converted (conversion) or retained (retention)
    converted: int
    rate: float | None
    ci_low: float
    ci_high: float


class ConversionUplift(BaseModel):
    entrants: UpliftArm
    holdout: UpliftArm
    uplift: float | None
    p_value: float


class RetentionUplift(ConversionUplift):
    days: int
    #: measured on a deterministic sample of an arm's runs (above 20,000 runs)
    sampled: bool


class UpliftPublic(BaseModel):
    journey_id: str
    conversion: ConversionUplift
    retention: RetentionUplift


class SegmentDay(BaseModel):
    day: date
    segment_id: str
    entered: int
    exited: int
    net: int


class SegmentsPublic(RangePublic):
    days: list[SegmentDay]


# --- experiments -------------------------------------------------------------------------


class ExperimentUpdate(SafeModel):
    #: the variant the others are compared with (default: control, else a, else first)
    control: str = Field(min_length=1)


class ExperimentPlan(BaseModel):
    mde: float
    baseline_rate: float
    effect: float
    tau: float
    alpha: float
    fixed_horizon_per_arm: int
    sequential_median_per_arm: int | None
    sequential_p80_per_arm: int | None
    exposed_per_arm: int
    more_per_arm: int | None
    more_per_arm_p80: int | None
    #: the tau the evaluator's own verdicts use
    evaluator_tau: float


class ExperimentPublic(BaseModel):
    journey_id: str
    journey_version: int
    step_id: str
    kind: Literal["holdout", "split"]
    control: str | None
    verdict: str
    winner: str | None
    p_value: float | None
    #: every number behind the verdict (services/metrics/stats.py)
    result: dict[str, Any] | None
    evaluated_at: datetime | None
    decision_id: str | None
    decided_at: datetime | None
    #: with ``?mde=``: what the sequential test expects to need (services/metrics/stats.py)
    plan: ExperimentPlan | None = None


class EvaluatePublic(BaseModel):
    decisions_enqueued: int


# --- objectives --------------------------------------------------------------------------


ObjectiveMetric = Literal[
    "churn_rate",
    "retention_rate",
    "active_customers",
    "revenue",
    "average_order_value",
    "conversion_rate",
    "nps",
    "csat",
]
#: metrics that can be narrowed to one journey
JOURNEY_METRICS = frozenset({"conversion_rate", "nps", "csat"})


class ObjectiveFields(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    metric: ObjectiveMetric
    period: CohortKind = "month"
    target: FiniteFloat
    #: the value at the start; measured over the period before ``start`` when omitted
    baseline: FiniteFloat | None = None
    start: BoundedDate
    deadline: BoundedDate
    journey_id: str | None = Field(default=None, min_length=1)
    description: str = ""


class ObjectiveCreate(ObjectiveFields, SafeModel):
    id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")

    @model_validator(mode="after")
    def _consistent(self) -> ObjectiveCreate:
        if self.deadline <= self.start:
            raise ValueError("deadline must be after start")
        if self.journey_id is not None and self.metric not in JOURNEY_METRICS:
            raise ValueError(
                f"only {', '.join(sorted(JOURNEY_METRICS))} can be narrowed to a journey"
            )
        if self.metric == "conversion_rate" and self.journey_id is None:
            raise ValueError("conversion_rate needs a journey_id")
        return self


class ObjectivePoint(BaseModel):
    period: date
    value: float | None


class ObjectiveProgress(BaseModel):
    baseline: float | None
    current: float | None
    #: (current − baseline) / (target − baseline)
    progress: float | None
    projected_at_deadline: float | None
    on_track: bool | None
    series: list[ObjectivePoint]


class ObjectivePublic(ObjectiveFields):
    id: str
    current: float | None
    progress: float | None
    projected_at_deadline: float | None
    on_track: bool | None
    series: list[ObjectivePoint]


# --- report ------------------------------------------------------------------------------


class ReportPublic(RangePublic):
    generated_at: datetime
    funnel: list[FunnelRow]
    cohorts: list[CohortPublic]
    activity: list[ActivityPeriod]
    revenue: list[RevenuePeriod]
    customers: CustomerValuePublic
    satisfaction: Satisfaction
    experiments: list[ExperimentPublic]
    objectives: list[ObjectivePublic]
