"""The metrics service's tables, all in the ``metrics`` Postgres schema declared
here as SQLAlchemy models, built by ``migrations/versions/`` (a test checks that the
two agree); the statements are in :mod:`.repository` and :mod:`.queries`.

Customer KPIs are kept incrementally, so every KPI query reads a few hundred rows:

- ``customers``: per customer, the first day seen (the cohort), orders and revenue.
- ``active_periods``: (customer, kind, period) for each day, ISO week and month the
  customer was active in: the compact per-customer activity table.
- ``period_counts``: per kind and period, customers active, and customers active in
  both the period before and this one (``retained``). Kept up to date as
  ``active_periods`` rows appear, in any order of event time.
- ``cohort_counts``: per kind, cohort (the period of first activity) and period,
  the customers of the cohort active in it; moved when a customer's first day moves
  earlier (a historical import).
- ``first_day_totals``: per first day seen, the customers first seen then, how many
  bought once / twice or more, their orders and revenue (LTV per cohort).
- ``daily_totals``: per day, events, orders and revenue.
- ``funnel_daily``: the messaging funnel per day, journey, step, variant, channel,
  metric and reason code ('' where absent; never a provider's free text).
- ``engagements``: (dispatch, kind) seen, so opens and clicks count once per message.
- ``touches``: each message sent, for last-touch attribution of goal events.
- ``survey_daily``: answers per day, kind (nps, csat), journey and score.
- ``segment_daily``: segment entries and exits per day.
- ``runs`` / ``run_variants``: each journey run (entrant or held out) and the
  variant it drew at each split, with when it converted.
- ``experiment_counts``: exposures and conversions per journey, version, split step
  (``(holdout)`` for entrants against the holdout) and variant.
- ``experiments``: per split or holdout, its control, the last verdict and
  its numbers, the running minimum of the sequential p-values, the decision sent.
- ``objectives``: SMART goals as JSON documents.
- ``coupon_issues``: which dispatch each offer code was issued for.
- ``erasures``: the erased customer ids (a tombstone: the only row that may hold an
  erased id). Their rows above were moved to a random pseudonym; their later
  messages are dropped (events) or counted under a pseudonym (the others).
- ``processed_messages``: the ids of messages applied (idempotency).
- ``outbox``: ``experiment.decisions`` to relay; ``outbox_relayed``: what the relay
  published, kept for a replay.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Date, Index, Integer, SmallInteger, Text, func
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.claims import processed_messages_table
from shared.db.engine import service_metadata
from shared.db.outbox import outbox_relayed_table, outbox_table
from shared.db.types import Key, Timestamp

SCHEMA = "metrics"

#: the split step id under which a journey's entrants are compared with its holdout
HOLDOUT_STEP = "(holdout)"
HOLDOUT_VARIANT = "holdout"
ENTRANTS_VARIANT = "journey"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


metadata = Base.metadata
outbox = outbox_table(metadata)
outbox_relayed = outbox_relayed_table(metadata)
processed_messages = processed_messages_table(metadata)


def _count() -> Mapped[int]:
    return mapped_column(BigInteger, server_default="0")


def _money() -> Mapped[float]:
    return mapped_column(DOUBLE_PRECISION, server_default="0")


# --- customer activity ------------------------------------------------------------------


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (Index("ix_metrics_customers_first_day", "first_day"),)

    customer_id: Mapped[str] = mapped_column(Key, primary_key=True)
    first_day: Mapped[date] = mapped_column(Date)
    orders: Mapped[int] = mapped_column(Integer, server_default="0")
    revenue: Mapped[float] = _money()


class ActivePeriod(Base):
    __tablename__ = "active_periods"

    customer_id: Mapped[str] = mapped_column(Key, primary_key=True)
    #: day, week or month
    kind: Mapped[str] = mapped_column(Text, primary_key=True)
    period: Mapped[date] = mapped_column(Date, primary_key=True)


class PeriodCount(Base):
    __tablename__ = "period_counts"

    kind: Mapped[str] = mapped_column(Text, primary_key=True)
    period: Mapped[date] = mapped_column(Date, primary_key=True)
    active: Mapped[int] = _count()
    #: active in this period and in the one before
    retained: Mapped[int] = _count()


class CohortCount(Base):
    __tablename__ = "cohort_counts"

    kind: Mapped[str] = mapped_column(Text, primary_key=True)
    cohort: Mapped[date] = mapped_column(Date, primary_key=True)
    period: Mapped[date] = mapped_column(Date, primary_key=True)
    #: 0 once the cohort's customers moved to an earlier one (never answered)
    customers: Mapped[int] = _count()


class FirstDayTotal(Base):
    """Per first day seen: the customers first seen that day and what they have bought
    so far, kept as customers buy (LTV per cohort reads a row per day)."""

    __tablename__ = "first_day_totals"

    first_day: Mapped[date] = mapped_column(Date, primary_key=True)
    customers: Mapped[int] = _count()
    buyers: Mapped[int] = _count()
    repeat_buyers: Mapped[int] = _count()
    orders: Mapped[int] = _count()
    revenue: Mapped[float] = _money()


class DailyTotal(Base):
    __tablename__ = "daily_totals"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    events: Mapped[int] = _count()
    orders: Mapped[int] = _count()
    revenue: Mapped[float] = _money()


# --- messaging --------------------------------------------------------------------------


class FunnelDaily(Base):
    __tablename__ = "funnel_daily"
    __table_args__ = (Index("ix_metrics_funnel_daily_journey", "journey_id", "day"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    journey_id: Mapped[str] = mapped_column(Key, primary_key=True)
    step_id: Mapped[str] = mapped_column(Key, primary_key=True)
    variant: Mapped[str] = mapped_column(Key, primary_key=True)
    channel: Mapped[str] = mapped_column(Key, primary_key=True)
    metric: Mapped[str] = mapped_column(Key, primary_key=True)
    reason: Mapped[str] = mapped_column(Key, primary_key=True)
    count: Mapped[int] = _count()


class Engagement(Base):
    __tablename__ = "engagements"

    dispatch_id: Mapped[str] = mapped_column(Key, primary_key=True)
    kind: Mapped[str] = mapped_column(Key, primary_key=True)


class Touch(Base):
    __tablename__ = "touches"
    __table_args__ = (Index("ix_metrics_touches_customer_at", "customer_id", "at"),)

    dispatch_id: Mapped[str] = mapped_column(Key, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Key)
    at: Mapped[datetime] = mapped_column(Timestamp)
    journey_id: Mapped[str] = mapped_column(Key)
    step_id: Mapped[str] = mapped_column(Key)
    variant: Mapped[str] = mapped_column(Key)
    channel: Mapped[str] = mapped_column(Key)
    converted_at: Mapped[datetime | None] = mapped_column(Timestamp)


class CouponIssue(Base):
    __tablename__ = "coupon_issues"

    code: Mapped[str] = mapped_column(Key, primary_key=True)
    dispatch_id: Mapped[str] = mapped_column(Key)


class SurveyDaily(Base):
    __tablename__ = "survey_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(Key, primary_key=True)
    journey_id: Mapped[str] = mapped_column(Key, primary_key=True)
    score: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    answers: Mapped[int] = _count()


class SegmentDaily(Base):
    __tablename__ = "segment_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    segment_id: Mapped[str] = mapped_column(Key, primary_key=True)
    entered: Mapped[int] = _count()
    exited: Mapped[int] = _count()


# --- journey runs and experiments -------------------------------------------------------


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_metrics_runs_journey", "journey_id", "entered_at"),)

    run_id: Mapped[str] = mapped_column(Key, primary_key=True)
    journey_id: Mapped[str] = mapped_column(Key)
    journey_version: Mapped[int] = mapped_column(Integer)
    customer_id: Mapped[str] = mapped_column(Key)
    entered_at: Mapped[datetime] = mapped_column(Timestamp)
    holdout: Mapped[bool] = mapped_column(Boolean)
    converted_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Alias(Base):
    """An id merged into another (``profiles`` ``mergedFrom`` / ``mergedInto``): rows
    of the old id that arrive after the merge are moved to the known id too."""

    __tablename__ = "aliases"

    previous_id: Mapped[str] = mapped_column(Key, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Key)


class RunVariant(Base):
    __tablename__ = "run_variants"

    run_id: Mapped[str] = mapped_column(Key, primary_key=True)
    step_id: Mapped[str] = mapped_column(Key, primary_key=True)
    journey_id: Mapped[str] = mapped_column(Key)
    journey_version: Mapped[int] = mapped_column(Integer)
    variant: Mapped[str] = mapped_column(Key)
    at: Mapped[datetime] = mapped_column(Timestamp)
    converted_at: Mapped[datetime | None] = mapped_column(Timestamp)


class ExperimentCount(Base):
    __tablename__ = "experiment_counts"

    journey_id: Mapped[str] = mapped_column(Key, primary_key=True)
    journey_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    step_id: Mapped[str] = mapped_column(Key, primary_key=True)
    variant: Mapped[str] = mapped_column(Key, primary_key=True)
    exposed: Mapped[int] = _count()
    converted: Mapped[int] = _count()


class Experiment(Base):
    __tablename__ = "experiments"

    journey_id: Mapped[str] = mapped_column(Key, primary_key=True)
    journey_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    step_id: Mapped[str] = mapped_column(Key, primary_key=True)
    control: Mapped[str | None] = mapped_column(Key)
    verdict: Mapped[str] = mapped_column(Text, server_default="no_winner_yet")
    winner: Mapped[str | None] = mapped_column(Key)
    p_value: Mapped[float | None] = mapped_column(DOUBLE_PRECISION)
    #: the running minimum of each comparison's sequential p-value
    min_p_values: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    evaluated_at: Mapped[datetime | None] = mapped_column(Timestamp)
    decision_id: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class Erasure(Base):
    __tablename__ = "erasures"

    customer_id: Mapped[str] = mapped_column(Key, primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(Timestamp)


class Objective(Base):
    __tablename__ = "objectives"

    id: Mapped[str] = mapped_column(Key, primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
