"""metrics tables

Revision ID: 0001
Revises:
Create Date: 2026-12-02 17:20:00
"""

from collections.abc import Sequence

from alembic import op

from shared.db.claims import processed_messages_table
from shared.db.migrations import create_declared_table
from shared.db.outbox import outbox_table

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

K = 'text COLLATE "C"'

UP = f"""
-- the first day of the day / ISO week / month holding ``day``
CREATE FUNCTION metrics.period_start(kind text, day date) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE kind WHEN 'day' THEN day ELSE date_trunc(kind, day)::date END
$$;
-- the period ``n`` periods after the one starting on ``period``
CREATE FUNCTION metrics.period_shift(kind text, period date, n int) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE kind WHEN 'day' THEN period + n WHEN 'week' THEN period + 7 * n
         ELSE (period + make_interval(months => n))::date END
$$;

CREATE TABLE metrics.customers (
  customer_id {K} PRIMARY KEY,
  first_day date NOT NULL,
  orders integer NOT NULL DEFAULT 0,
  revenue double precision NOT NULL DEFAULT 0
);
CREATE INDEX ix_metrics_customers_first_day ON metrics.customers (first_day);

CREATE TABLE metrics.active_periods (
  customer_id {K} NOT NULL,
  kind text NOT NULL,
  period date NOT NULL,
  CONSTRAINT pk_active_periods PRIMARY KEY (customer_id, kind, period)
);

CREATE TABLE metrics.period_counts (
  kind text NOT NULL,
  period date NOT NULL,
  active bigint NOT NULL DEFAULT 0,
  retained bigint NOT NULL DEFAULT 0,
  CONSTRAINT pk_period_counts PRIMARY KEY (kind, period)
);

CREATE TABLE metrics.cohort_counts (
  kind text NOT NULL,
  cohort date NOT NULL,
  period date NOT NULL,
  customers bigint NOT NULL DEFAULT 0,
  CONSTRAINT pk_cohort_counts PRIMARY KEY (kind, cohort, period)
);

-- per first day seen: the customers first seen that day and what they have bought so
-- far, kept as customers buy (so LTV per cohort reads a row per day, not every customer)
CREATE TABLE metrics.first_day_totals (
  first_day date PRIMARY KEY,
  customers bigint NOT NULL DEFAULT 0,
  buyers bigint NOT NULL DEFAULT 0,
  repeat_buyers bigint NOT NULL DEFAULT 0,
  orders bigint NOT NULL DEFAULT 0,
  revenue double precision NOT NULL DEFAULT 0
);

CREATE TABLE metrics.daily_totals (
  day date PRIMARY KEY,
  events bigint NOT NULL DEFAULT 0,
  orders bigint NOT NULL DEFAULT 0,
  revenue double precision NOT NULL DEFAULT 0
);

CREATE TABLE metrics.funnel_daily (
  day date NOT NULL,
  journey_id {K} NOT NULL,
  step_id {K} NOT NULL,
  variant {K} NOT NULL,
  channel {K} NOT NULL,
  metric {K} NOT NULL,
  reason {K} NOT NULL,
  count bigint NOT NULL DEFAULT 0,
  CONSTRAINT pk_funnel_daily PRIMARY KEY (day, journey_id, step_id, variant, channel, metric, reason)
);
CREATE INDEX ix_metrics_funnel_daily_journey ON metrics.funnel_daily (journey_id, day);

CREATE TABLE metrics.engagements (
  dispatch_id {K} NOT NULL,
  kind {K} NOT NULL,
  CONSTRAINT pk_engagements PRIMARY KEY (dispatch_id, kind)
);

CREATE TABLE metrics.touches (
  dispatch_id {K} PRIMARY KEY,
  customer_id {K} NOT NULL,
  at timestamptz NOT NULL,
  journey_id {K} NOT NULL,
  step_id {K} NOT NULL,
  variant {K} NOT NULL,
  channel {K} NOT NULL,
  converted_at timestamptz
);
CREATE INDEX ix_metrics_touches_customer_at ON metrics.touches (customer_id, at);

CREATE TABLE metrics.survey_daily (
  day date NOT NULL,
  kind {K} NOT NULL,
  journey_id {K} NOT NULL,
  score smallint NOT NULL,
  answers bigint NOT NULL DEFAULT 0,
  CONSTRAINT pk_survey_daily PRIMARY KEY (day, kind, journey_id, score)
);

CREATE TABLE metrics.segment_daily (
  day date NOT NULL,
  segment_id {K} NOT NULL,
  entered bigint NOT NULL DEFAULT 0,
  exited bigint NOT NULL DEFAULT 0,
  CONSTRAINT pk_segment_daily PRIMARY KEY (day, segment_id)
);

CREATE TABLE metrics.runs (
  run_id {K} PRIMARY KEY,
  journey_id {K} NOT NULL,
  journey_version integer NOT NULL,
  customer_id {K} NOT NULL,
  entered_at timestamptz NOT NULL,
  holdout boolean NOT NULL,
  converted_at timestamptz
);
CREATE INDEX ix_metrics_runs_journey ON metrics.runs (journey_id, entered_at);

CREATE TABLE metrics.run_variants (
  run_id {K} NOT NULL,
  step_id {K} NOT NULL,
  journey_id {K} NOT NULL,
  journey_version integer NOT NULL,
  variant {K} NOT NULL,
  at timestamptz NOT NULL,
  converted_at timestamptz,
  CONSTRAINT pk_run_variants PRIMARY KEY (run_id, step_id)
);

CREATE TABLE metrics.experiment_counts (
  journey_id {K} NOT NULL,
  journey_version integer NOT NULL,
  step_id {K} NOT NULL,
  variant {K} NOT NULL,
  exposed bigint NOT NULL DEFAULT 0,
  converted bigint NOT NULL DEFAULT 0,
  CONSTRAINT pk_experiment_counts PRIMARY KEY (journey_id, journey_version, step_id, variant)
);

CREATE TABLE metrics.experiments (
  journey_id {K} NOT NULL,
  journey_version integer NOT NULL,
  step_id {K} NOT NULL,
  control {K},
  verdict text NOT NULL DEFAULT 'no_winner_yet',
  winner {K},
  p_value double precision,
  min_p_values jsonb NOT NULL DEFAULT '{{}}'::jsonb,
  result jsonb,
  evaluated_at timestamptz,
  decision_id text,
  decided_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_experiments PRIMARY KEY (journey_id, journey_version, step_id)
);

CREATE TABLE metrics.objectives (
  id {K} PRIMARY KEY,
  document jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
"""

DOWN = """
DROP TABLE metrics.outbox, metrics.objectives, metrics.experiments, metrics.experiment_counts,
  metrics.run_variants, metrics.runs, metrics.segment_daily, metrics.survey_daily,
  metrics.touches, metrics.engagements, metrics.funnel_daily, metrics.daily_totals,
  metrics.first_day_totals,
  metrics.cohort_counts, metrics.period_counts, metrics.active_periods, metrics.customers,
  metrics.processed_messages;
DROP FUNCTION metrics.period_shift(text, date, int);
DROP FUNCTION metrics.period_start(text, date);
"""


def _run(script: str) -> None:
    # one statement at a time: the async driver prepares each statement it runs
    for statement in script.split(";\n"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _run(UP)
    create_declared_table("metrics", processed_messages_table)
    create_declared_table("metrics", outbox_table)


def downgrade() -> None:
    _run(DOWN)
