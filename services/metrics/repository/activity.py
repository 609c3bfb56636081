"""The batch's customer activity: customers, their active days / weeks / months, and
the period, cohort, first-day and daily counts every customer KPI reads.

Set-based statements on the asyncpg connection under SQLAlchemy's
(:func:`shared.db.engine.driver_connection`), inside the batch's transaction.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date
from typing import Any

from services.metrics.fold import Delta
from services.metrics.periods import period_start, shift_period

Driver = Any  # asyncpg.Connection
PERIOD_KINDS = ("day", "week", "month")


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
