"""Set-based statements of the metrics service: the batch's writes and the KPI reads.

Writes take whole columns as arrays on the asyncpg connection under SQLAlchemy's
(:func:`shared.db.engine.driver_connection`), inside the batch's transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from services.metrics.fold import (
    Attribution,
    Delta,
    Engagement,
    Exposure,
    FunnelKey,
    RunStart,
    Touch,
)
from services.metrics.models import ENTRANTS_VARIANT, HOLDOUT_STEP, HOLDOUT_VARIANT

Driver = Any  # asyncpg.Connection
PERIOD_KINDS = ("day", "week", "month")
COHORT_KINDS = ("week", "month")

#: experiment arm → (exposed, converted) to add
ArmKey = tuple[str, int, str, str]


# --- customer activity ------------------------------------------------------------------


async def apply_activity(driver: Driver, delta: Delta) -> None:
    """Customers, their active days / weeks / months, and the counts kept from them."""
    if not delta.activity:
        return
    customers: dict[str, list[Any]] = {}
    totals: dict[date, list[float]] = {}
    for (customer, day), (events, orders, revenue) in delta.activity.items():
        row = customers.setdefault(customer, [day, 0, 0.0])
        row[0] = min(row[0], day)
        row[1] += orders
        row[2] += revenue
        total = totals.setdefault(day, [0, 0, 0.0])
        total[0] += events
        total[1] += orders
        total[2] += revenue
    ids = sorted(customers)
    moved = await driver.fetch(
        """
        WITH given AS (
            SELECT * FROM unnest($1::text[], $2::date[], $3::int[], $4::float8[])
                AS g(customer_id, first_day, orders, revenue)
        ), old AS (
            SELECT c.customer_id, c.first_day
            FROM metrics.customers c JOIN given g ON g.customer_id = c.customer_id
        ), up AS (
            INSERT INTO metrics.customers AS c (customer_id, first_day, orders, revenue)
            SELECT customer_id, first_day, orders, revenue FROM given
            ON CONFLICT (customer_id) DO UPDATE SET
                first_day = LEAST(c.first_day, EXCLUDED.first_day),
                orders = c.orders + EXCLUDED.orders,
                revenue = c.revenue + EXCLUDED.revenue
            RETURNING c.customer_id, c.first_day
        )
        SELECT up.customer_id, old.first_day AS old_first, up.first_day AS new_first
        FROM up JOIN old ON old.customer_id = up.customer_id
        WHERE old.first_day <> up.first_day
        """,
        ids,
        [customers[c][0] for c in ids],
        [customers[c][1] for c in ids],
        [customers[c][2] for c in ids],
    )
    if moved:
        # A customer seen earlier than we knew (a historical import): the periods they
        # were already active in move from their old cohort to the new one.
        await driver.execute(
            """
            WITH moved AS (
                SELECT * FROM unnest($1::text[], $2::date[], $3::date[])
                    AS m(customer_id, old_first, new_first)
            ), shifts AS (
                SELECT ap.kind, s.cohort, ap.period, s.sign
                FROM moved m
                JOIN metrics.active_periods ap
                  ON ap.customer_id = m.customer_id AND ap.kind IN ('week', 'month')
                CROSS JOIN LATERAL (VALUES
                    (metrics.period_start(ap.kind, m.old_first), -1),
                    (metrics.period_start(ap.kind, m.new_first), 1)) AS s(cohort, sign)
                WHERE metrics.period_start(ap.kind, m.old_first)
                      <> metrics.period_start(ap.kind, m.new_first)
            )
            INSERT INTO metrics.cohort_counts AS cc (kind, cohort, period, customers)
            SELECT kind, cohort, period, sum(sign) FROM shifts
            GROUP BY kind, cohort, period ORDER BY kind, cohort, period
            ON CONFLICT (kind, cohort, period)
            DO UPDATE SET customers = cc.customers + EXCLUDED.customers
            """,
            [r[0] for r in moved],
            [r[1] for r in moved],
            [r[2] for r in moved],
        )
    pairs = sorted(delta.activity)
    new = await driver.fetch(
        """
        WITH given AS (
            SELECT DISTINCT g.customer_id, k.kind, metrics.period_start(k.kind, g.day) AS period
            FROM unnest($1::text[], $2::date[]) AS g(customer_id, day)
            CROSS JOIN unnest(ARRAY['day', 'week', 'month']) AS k(kind)
        ), n AS (
            INSERT INTO metrics.active_periods (customer_id, kind, period)
            SELECT customer_id, kind, period FROM given ORDER BY customer_id, kind, period
            ON CONFLICT DO NOTHING
            RETURNING customer_id, kind, period
        ), active AS (
            INSERT INTO metrics.period_counts AS pc (kind, period, active)
            SELECT kind, period, count(*) FROM n GROUP BY kind, period ORDER BY kind, period
            ON CONFLICT (kind, period) DO UPDATE SET active = pc.active + EXCLUDED.active
        ), cohorts AS (
            INSERT INTO metrics.cohort_counts AS cc (kind, cohort, period, customers)
            SELECT n.kind, metrics.period_start(n.kind, c.first_day), n.period, count(*)
            FROM n JOIN metrics.customers c ON c.customer_id = n.customer_id
            WHERE n.kind <> 'day'
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            ON CONFLICT (kind, cohort, period)
            DO UPDATE SET customers = cc.customers + EXCLUDED.customers
        )
        SELECT customer_id, kind, period FROM n
        """,
        [c for c, _ in pairs],
        [d for _, d in pairs],
    )
    if new:
        # retained[p] counts customers active in p and in the period before it; a new
        # row (c, p) adds one to p when (c, p-1) exists, and one to p+1 when (c, p+1)
        # exists and is not itself new (that one counted p+1 already).
        await driver.execute(
            """
            WITH n AS (
                SELECT * FROM unnest($1::text[], $2::text[], $3::date[])
                    AS n(customer_id, kind, period)
            ), credit AS (
                SELECT n.kind, n.period FROM n
                JOIN metrics.active_periods p ON p.customer_id = n.customer_id
                 AND p.kind = n.kind AND p.period = metrics.period_shift(n.kind, n.period, -1)
                UNION ALL
                SELECT n.kind, nx.period FROM n
                JOIN metrics.active_periods nx ON nx.customer_id = n.customer_id
                 AND nx.kind = n.kind AND nx.period = metrics.period_shift(n.kind, n.period, 1)
                WHERE NOT EXISTS (
                    SELECT 1 FROM n n2 WHERE n2.customer_id = n.customer_id
                       AND n2.kind = n.kind AND n2.period = nx.period)
            )
            INSERT INTO metrics.period_counts AS pc (kind, period, retained)
            SELECT kind, period, count(*) FROM credit GROUP BY kind, period ORDER BY 1, 2
            ON CONFLICT (kind, period) DO UPDATE SET retained = pc.retained + EXCLUDED.retained
            """,
            [r[0] for r in new],
            [r[1] for r in new],
            [r[2] for r in new],
        )
    days = sorted(totals)
    await driver.execute(
        """
        INSERT INTO metrics.daily_totals AS t (day, events, orders, revenue)
        SELECT * FROM unnest($1::date[], $2::bigint[], $3::bigint[], $4::float8[])
        ON CONFLICT (day) DO UPDATE SET events = t.events + EXCLUDED.events,
            orders = t.orders + EXCLUDED.orders, revenue = t.revenue + EXCLUDED.revenue
        """,
        days,
        [int(totals[d][0]) for d in days],
        [int(totals[d][1]) for d in days],
        [totals[d][2] for d in days],
    )


# --- messaging funnel --------------------------------------------------------------------


async def insert_touches(driver: Driver, touches: Sequence[Touch]) -> None:
    if not touches:
        return
    await driver.execute(
        """
        INSERT INTO metrics.touches
            (dispatch_id, customer_id, at, journey_id, step_id, variant, channel)
        SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[],
                             $5::text[], $6::text[], $7::text[])
        ON CONFLICT DO NOTHING
        """,
        [t.dispatch_id for t in touches],
        [t.customer_id for t in touches],
        [t.at for t in touches],
        [t.attribution.journey_id for t in touches],
        [t.attribution.step_id for t in touches],
        [t.attribution.variant for t in touches],
        [t.attribution.channel for t in touches],
    )


async def attribute_goals(
    driver: Driver, *, goals: Sequence[tuple[str, datetime]], window: timedelta
) -> list[tuple[date, Attribution]]:
    """Credit each goal event to the last message sent to its customer within
    ``window`` before it (once per message); return the credited sends' days and
    attribution."""
    if not goals:
        return []
    rows = await driver.fetch(
        """
        WITH g AS (
            SELECT * FROM unnest($1::text[], $2::timestamptz[]) AS g(customer_id, at)
        ), last_touch AS (
            SELECT t.dispatch_id, min(g.at) AS at FROM g
            CROSS JOIN LATERAL (
                SELECT dispatch_id FROM metrics.touches t
                WHERE t.customer_id = g.customer_id AND t.at <= g.at AND t.at > g.at - $3::interval
                ORDER BY t.at DESC LIMIT 1
            ) AS t
            GROUP BY t.dispatch_id
        )
        UPDATE metrics.touches t SET converted_at = last_touch.at
        FROM last_touch WHERE t.dispatch_id = last_touch.dispatch_id
          AND t.converted_at IS NULL
        RETURNING t.at, t.journey_id, t.step_id, t.variant, t.channel
        """,
        [c for c, _ in goals],
        [at for _, at in goals],
        window,
    )
    return [(r[0].date(), Attribution(r[1], r[2], r[3], r[4])) for r in rows]


async def first_engagements(driver: Driver, engagements: Sequence[Engagement]) -> list[Engagement]:
    """The engagements that are the first of their kind for their message (an email
    opened five times is one open); those without a dispatch id all count."""
    keyed = [e for e in engagements if e.dispatch_id]
    first = [e for e in engagements if not e.dispatch_id]
    if keyed:
        rows = await driver.fetch(
            """
            INSERT INTO metrics.engagements (dispatch_id, kind)
            SELECT DISTINCT * FROM unnest($1::text[], $2::text[]) ORDER BY 1, 2
            ON CONFLICT DO NOTHING RETURNING dispatch_id, kind
            """,
            [e.dispatch_id for e in keyed],
            [e.metric for e in keyed],
        )
        fresh = {(r[0], r[1]) for r in rows}
        for e in keyed:
            if (e.dispatch_id, e.metric) in fresh:
                first.append(e)
                fresh.discard((e.dispatch_id, e.metric))
    return first


async def upsert_funnel(driver: Driver, funnel: Counter[FunnelKey]) -> None:
    if not funnel:
        return
    keys = sorted(funnel)
    columns = list(zip(*keys, strict=True))
    await driver.execute(
        """
        INSERT INTO metrics.funnel_daily AS f
            (day, journey_id, step_id, variant, channel, metric, reason, count)
        SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::text[], $7::text[], $8::bigint[])
        ON CONFLICT (day, journey_id, step_id, variant, channel, metric, reason)
        DO UPDATE SET count = f.count + EXCLUDED.count
        """,
        *[list(c) for c in columns],
        [funnel[k] for k in keys],
    )


async def upsert_surveys(driver: Driver, surveys: Counter[tuple[date, str, str, int]]) -> None:
    if not surveys:
        return
    keys = sorted(surveys)
    await driver.execute(
        """
        INSERT INTO metrics.survey_daily AS s (day, kind, journey_id, score, answers)
        SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::smallint[], $5::bigint[])
        ON CONFLICT (day, kind, journey_id, score)
        DO UPDATE SET answers = s.answers + EXCLUDED.answers
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [k[3] for k in keys],
        [surveys[k] for k in keys],
    )


async def upsert_segments(driver: Driver, segments: dict[tuple[date, str], list[int]]) -> None:
    if not segments:
        return
    keys = sorted(segments)
    await driver.execute(
        """
        INSERT INTO metrics.segment_daily AS s (day, segment_id, entered, exited)
        SELECT * FROM unnest($1::date[], $2::text[], $3::bigint[], $4::bigint[])
        ON CONFLICT (day, segment_id) DO UPDATE
        SET entered = s.entered + EXCLUDED.entered, exited = s.exited + EXCLUDED.exited
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [segments[k][0] for k in keys],
        [segments[k][1] for k in keys],
    )


# --- journey runs and experiments ----------------------------------------------------------


async def apply_runs(
    driver: Driver,
    *,
    runs: Sequence[RunStart],
    exposures: Sequence[Exposure],
    conversions: Sequence[tuple[str, datetime]],
) -> tuple[Counter[ArmKey], Counter[ArmKey]]:
    """Runs, split exposures and conversions; return (exposed, converted) per arm,
    counting each run once per arm. Runs of one customer come in order (one
    partition), so a conversion finds the exposures before it."""
    exposed: Counter[ArmKey] = Counter()
    converted: Counter[ArmKey] = Counter()
    if runs:
        rows = await driver.fetch(
            """
            INSERT INTO metrics.runs
                (run_id, journey_id, journey_version, customer_id, entered_at, holdout)
            SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[],
                                 $5::timestamptz[], $6::bool[])
            ON CONFLICT DO NOTHING RETURNING journey_id, journey_version, holdout
            """,
            [r.run_id for r in runs],
            [r.journey_id for r in runs],
            [r.journey_version for r in runs],
            [r.customer_id for r in runs],
            [r.entered_at for r in runs],
            [r.holdout for r in runs],
        )
        for journey, version, holdout in rows:
            exposed[(journey, version, HOLDOUT_STEP, _arm(holdout))] += 1
    if exposures:
        rows = await driver.fetch(
            """
            INSERT INTO metrics.run_variants
                (run_id, step_id, journey_id, journey_version, variant, at)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[],
                                 $6::timestamptz[])
            ON CONFLICT DO NOTHING RETURNING journey_id, journey_version, step_id, variant
            """,
            [e.run_id for e in exposures],
            [e.step_id for e in exposures],
            [e.journey_id for e in exposures],
            [e.journey_version for e in exposures],
            [e.variant for e in exposures],
            [e.at for e in exposures],
        )
        for journey, version, step, variant in rows:
            exposed[(journey, version, step, variant)] += 1
    if conversions:
        ids = [c[0] for c in conversions]
        ats = [c[1] for c in conversions]
        rows = await driver.fetch(
            """
            WITH c AS (
                SELECT run_id, min(at) AS at FROM unnest($1::text[], $2::timestamptz[])
                    AS c(run_id, at) GROUP BY run_id
            )
            UPDATE metrics.runs r SET converted_at = c.at FROM c
            WHERE r.run_id = c.run_id AND r.converted_at IS NULL
            RETURNING r.journey_id, r.journey_version, r.holdout
            """,
            ids,
            ats,
        )
        for journey, version, holdout in rows:
            converted[(journey, version, HOLDOUT_STEP, _arm(holdout))] += 1
        rows = await driver.fetch(
            """
            WITH c AS (
                SELECT run_id, min(at) AS at FROM unnest($1::text[], $2::timestamptz[])
                    AS c(run_id, at) GROUP BY run_id
            )
            UPDATE metrics.run_variants v SET converted_at = c.at FROM c
            WHERE v.run_id = c.run_id AND v.converted_at IS NULL AND v.at <= c.at
            RETURNING v.journey_id, v.journey_version, v.step_id, v.variant
            """,
            ids,
            ats,
        )
        for key in rows:
            converted[(key[0], key[1], key[2], key[3])] += 1
    arms = sorted(set(exposed) | set(converted))
    if arms:
        await driver.execute(
            """
            WITH given AS (
                SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[],
                                     $5::bigint[], $6::bigint[])
                    AS g(journey_id, journey_version, step_id, variant, exposed, converted)
            ), experiments AS (
                INSERT INTO metrics.experiments (journey_id, journey_version, step_id)
                SELECT DISTINCT journey_id, journey_version, step_id FROM given ORDER BY 1, 2, 3
                ON CONFLICT DO NOTHING
            )
            INSERT INTO metrics.experiment_counts AS e
                (journey_id, journey_version, step_id, variant, exposed, converted)
            SELECT * FROM given
            ON CONFLICT (journey_id, journey_version, step_id, variant) DO UPDATE
            SET exposed = e.exposed + EXCLUDED.exposed, converted = e.converted + EXCLUDED.converted
            """,
            [a[0] for a in arms],
            [a[1] for a in arms],
            [a[2] for a in arms],
            [a[3] for a in arms],
            [exposed[a] for a in arms],
            [converted[a] for a in arms],
        )
    return exposed, converted


def _arm(holdout: bool) -> str:
    return HOLDOUT_VARIANT if holdout else ENTRANTS_VARIANT
