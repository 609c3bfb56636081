"""Set-based statements of the metrics service: the batch's writes and the KPI reads.

Writes take whole columns as arrays on the asyncpg connection under SQLAlchemy's
(:func:`shared.db.engine.driver_connection`), inside the batch's transaction.
"""

from __future__ import annotations

from collections import Counter, defaultdict
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
from services.metrics.periods import period_start, shift_period

Driver = Any  # asyncpg.Connection
PERIOD_KINDS = ("day", "week", "month")
COHORT_KINDS = ("week", "month")

#: experiment arm → (exposed, converted) to add
ArmKey = tuple[str, int, str, str]


# --- customer activity ------------------------------------------------------------------


async def apply_activity(driver: Driver, delta: Delta) -> None:
    """Customers, their active days / weeks / months, and the counts kept from them.

    The batch's customers' periods are read in one index scan; which rows are new,
    the active / retained / cohort counts they add, and the cohort moves of customers
    seen earlier than known are worked out here, then written with multi-row upserts.
    (Messages are keyed by customer, so no other replica writes these customers
    meanwhile.)
    """
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
    prior = {
        r[0]: (r[1], r[2], r[3])
        for r in await driver.fetch(
            "SELECT customer_id, first_day, orders, revenue FROM metrics.customers "
            "WHERE customer_id = ANY($1::text[])",
            ids,
        )
    }
    old_first = {c: v[0] for c, v in prior.items()}
    new_first = {
        c: min(customers[c][0], old_first[c]) if c in old_first else customers[c][0] for c in ids
    }
    await driver.execute(
        """
        INSERT INTO metrics.customers AS c (customer_id, first_day, orders, revenue)
        SELECT * FROM unnest($1::text[], $2::date[], $3::int[], $4::float8[])
        ON CONFLICT (customer_id) DO UPDATE SET
            first_day = LEAST(c.first_day, EXCLUDED.first_day),
            orders = c.orders + EXCLUDED.orders,
            revenue = c.revenue + EXCLUDED.revenue
        """,
        ids,
        [customers[c][0] for c in ids],
        [customers[c][1] for c in ids],
        [customers[c][2] for c in ids],
    )
    wanted = {
        (customer, kind, period_start(kind, day))
        for customer, day in delta.activity
        for kind in PERIOD_KINDS
    }
    # which of these, and of their neighbours, exist already: one lookup by key
    probe = wanted | {(c, k, shift_period(k, p, n)) for c, k, p in wanted for n in (-1, 1)}
    keys = sorted(probe)
    existing = {
        (r[0], r[1], r[2])
        for r in await driver.fetch(
            """
            SELECT ap.customer_id, ap.kind, ap.period
            FROM unnest($1::text[], $2::text[], $3::date[]) AS k(customer_id, kind, period)
            JOIN metrics.active_periods ap ON ap.customer_id = k.customer_id
             AND ap.kind = k.kind AND ap.period = k.period
            """,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
        )
    }
    fresh = sorted(wanted - existing)
    active: Counter[tuple[str, date]] = Counter()
    retained: Counter[tuple[str, date]] = Counter()
    cohort: Counter[tuple[str, date, date]] = Counter()
    added: set[tuple[str, str, date]] = set()
    if fresh:
        inserted = await driver.fetch(
            """
            INSERT INTO metrics.active_periods (customer_id, kind, period)
            SELECT * FROM unnest($1::text[], $2::text[], $3::date[])
            ON CONFLICT DO NOTHING RETURNING customer_id, kind, period
            """,
            [r[0] for r in fresh],
            [r[1] for r in fresh],
            [r[2] for r in fresh],
        )
        added = {(r[0], r[1], r[2]) for r in inserted}
        known = existing | added
        for customer, kind, period in added:
            active[(kind, period)] += 1
            # retained[p]: active in p and in the period before. A new (c, p) credits p
            # when (c, p-1) is known, and p+1 when (c, p+1) existed before this batch
            # (a new (c, p+1) credits itself)
            if (customer, kind, shift_period(kind, period, -1)) in known:
                retained[(kind, period)] += 1
            following = shift_period(kind, period, 1)
            if (customer, kind, following) in existing:
                retained[(kind, following)] += 1
            if kind != "day":
                cohort[(kind, period_start(kind, new_first[customer]), period)] += 1
    # customers seen earlier than known (a historical import): the periods they were
    # already active in move from the old cohort to the new one
    moved = sorted(c for c, first in old_first.items() if new_first[c] < first)
    earlier = (
        await driver.fetch(
            "SELECT customer_id, kind, period FROM metrics.active_periods "
            "WHERE customer_id = ANY($1::text[]) AND kind <> 'day'",
            moved,
        )
        if moved
        else []
    )
    for customer, kind, period in earlier:
        if (customer, kind, period) in added:
            continue  # counted in its new cohort above
        before, now = old_first[customer], new_first[customer]
        if period_start(kind, before) != period_start(kind, now):
            cohort[(kind, period_start(kind, before), period)] -= 1
            cohort[(kind, period_start(kind, now), period)] += 1
    counted = sorted(set(active) | set(retained))
    if counted:
        await driver.execute(
            """
            INSERT INTO metrics.period_counts AS pc (kind, period, active, retained)
            SELECT * FROM unnest($1::text[], $2::date[], $3::bigint[], $4::bigint[])
            ON CONFLICT (kind, period) DO UPDATE
            SET active = pc.active + EXCLUDED.active, retained = pc.retained + EXCLUDED.retained
            """,
            [k for k, _ in counted],
            [p for _, p in counted],
            [active[k] for k in counted],
            [retained[k] for k in counted],
        )
    cohorts = sorted(k for k, v in cohort.items() if v)
    if cohorts:
        await driver.execute(
            """
            INSERT INTO metrics.cohort_counts AS cc (kind, cohort, period, customers)
            SELECT * FROM unnest($1::text[], $2::date[], $3::date[], $4::bigint[])
            ON CONFLICT (kind, cohort, period)
            DO UPDATE SET customers = cc.customers + EXCLUDED.customers
            """,
            [k[0] for k in cohorts],
            [k[1] for k in cohorts],
            [k[2] for k in cohorts],
            [cohort[k] for k in cohorts],
        )
    # what each customer adds to the totals of its first day, before and after
    value: dict[date, list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0.0])
    for c in ids:
        if c in prior:
            first, orders, revenue = prior[c]
            _contribute(value[first], -1, orders, revenue)
        else:
            orders, revenue = 0, 0.0
        _contribute(value[new_first[c]], 1, orders + customers[c][1], revenue + customers[c][2])
    firsts = sorted(d for d, v in value.items() if any(v))
    if firsts:
        await driver.execute(
            """
            INSERT INTO metrics.first_day_totals AS f
                (first_day, customers, buyers, repeat_buyers, orders, revenue)
            SELECT * FROM unnest($1::date[], $2::bigint[], $3::bigint[], $4::bigint[],
                                 $5::bigint[], $6::float8[])
            ON CONFLICT (first_day) DO UPDATE SET customers = f.customers + EXCLUDED.customers,
                buyers = f.buyers + EXCLUDED.buyers,
                repeat_buyers = f.repeat_buyers + EXCLUDED.repeat_buyers,
                orders = f.orders + EXCLUDED.orders, revenue = f.revenue + EXCLUDED.revenue
            """,
            firsts,
            *[[int(value[d][i]) for d in firsts] for i in range(4)],
            [value[d][4] for d in firsts],
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


def _contribute(row: list[float], sign: int, orders: int, revenue: float) -> None:
    row[0] += sign
    row[1] += sign * (orders >= 1)
    row[2] += sign * (orders >= 2)
    row[3] += sign * orders
    row[4] += sign * revenue


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


async def record_coupon_issues(driver: Driver, issues: Sequence[tuple[str, str]]) -> None:
    if not issues:
        return
    await driver.execute(
        """
        INSERT INTO metrics.coupon_issues (code, dispatch_id)
        SELECT DISTINCT * FROM unnest($1::text[], $2::text[]) ORDER BY 1
        ON CONFLICT DO NOTHING
        """,
        [code for code, _ in issues],
        [dispatch_id for _, dispatch_id in issues],
    )


async def attribute_redemptions(
    driver: Driver, redemptions: Sequence[tuple[str, str, datetime]]
) -> tuple[
    list[tuple[date, Attribution]], list[tuple[date, Attribution]], set[tuple[str, datetime]]
]:
    """Tie each redeemed code to the dispatch it was issued for: the first redemption per
    message counts ``redeemed``, and converts the message (direct attribution, so the
    redeeming purchase is no longer credited to the last touch). Returns the
    ``redeemed`` and ``converted`` sends (day, attribution) and the (customer, at) of the
    redemptions credited."""
    if not redemptions:
        return [], [], set()
    matched = await driver.fetch(
        """
        SELECT r.customer_id, r.at, c.dispatch_id
        FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS r(code, customer_id, at)
        JOIN metrics.coupon_issues c ON c.code = r.code
        JOIN metrics.touches t ON t.dispatch_id = c.dispatch_id AND t.at <= r.at
        ORDER BY c.dispatch_id, r.at
        """,
        [code for code, _, _ in redemptions],
        [customer for _, customer, _ in redemptions],
        [at for _, _, at in redemptions],
    )
    if not matched:
        return [], [], set()
    first_at: dict[str, datetime] = {}
    for row in matched:
        first_at.setdefault(row[2], row[1])
    dispatches = sorted(first_at)
    redeemed = await driver.fetch(
        """
        WITH fresh AS (
            INSERT INTO metrics.engagements (dispatch_id, kind)
            SELECT d, 'redeemed' FROM unnest($1::text[]) AS d ORDER BY 1
            ON CONFLICT DO NOTHING RETURNING dispatch_id
        )
        SELECT t.at, t.journey_id, t.step_id, t.variant, t.channel
        FROM fresh JOIN metrics.touches t USING (dispatch_id)
        """,
        dispatches,
    )
    converted = await driver.fetch(
        """
        UPDATE metrics.touches t SET converted_at = r.at
        FROM unnest($1::text[], $2::timestamptz[]) AS r(dispatch_id, at)
        WHERE t.dispatch_id = r.dispatch_id AND t.converted_at IS NULL
        RETURNING t.at, t.journey_id, t.step_id, t.variant, t.channel
        """,
        dispatches,
        [first_at[d] for d in dispatches],
    )

    def sends(rows: Sequence[Any]) -> list[tuple[date, Attribution]]:
        return [(r[0].date(), Attribution(r[1], r[2], r[3], r[4])) for r in rows]

    return sends(redeemed), sends(converted), {(row[0], row[1]) for row in matched}


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
