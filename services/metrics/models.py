"""The metrics service's tables, all in the ``metrics`` Postgres schema (DDL in
``migrations/versions/0001_metrics_tables.py``; statements in :mod:`repository`).

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
  metric and reason ('' where absent).
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
- ``processed_messages``: the ids of messages applied (idempotency).
- ``outbox``: ``experiment.decisions`` to relay.
"""

from __future__ import annotations

from shared.db.claims import processed_messages_table
from shared.db.engine import service_metadata
from shared.db.outbox import outbox_table

SCHEMA = "metrics"

metadata = service_metadata(SCHEMA)
outbox = outbox_table(metadata)
processed_messages = processed_messages_table(metadata)

#: the split step id under which a journey's entrants are compared with its holdout
HOLDOUT_STEP = "(holdout)"
HOLDOUT_VARIANT = "holdout"
ENTRANTS_VARIANT = "journey"
