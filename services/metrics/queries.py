"""The KPI reads, each a few statements over the incremental tables (see
:mod:`services.metrics.models`), so each answers in milliseconds whatever the
number of events. Definitions are in docs/services/metrics.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Literal

from services.metrics.models import HOLDOUT_STEP
from services.metrics.periods import period_start, shift_period
from services.metrics.stats import two_proportion_ztest, wilson_interval

Driver = Any
PeriodKind = Literal["day", "week", "month"]
FUNNEL_METRICS = (
    "requested",
    "deferred",
    "sent",
    "suppressed",
    "failed",
    "delivered",
    "bounced",
    "opened",
    "clicked",
    "unsubscribed",
    "complained",
    "converted",
    "redeemed",
)
FUNNEL_DIMENSIONS = ("day", "journey_id", "step_id", "variant", "channel")
#: runs per arm above which the retention uplift is measured on a sample
RETENTION_SAMPLE = 20_000


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


async def activity(
    driver: Driver, *, kind: PeriodKind, start: date, end: date
) -> list[dict[str, Any]]:
    """Active, retained and churned customers per period from ``start`` to ``end``."""
    rows = await driver.fetch(
        """
        WITH periods AS (
            SELECT p::date AS period FROM generate_series(
                metrics.period_start($1, $2), metrics.period_start($1, $3),
                CASE $1 WHEN 'day' THEN interval '1 day' WHEN 'week' THEN interval '7 days'
                        ELSE interval '1 month' END) AS p
        )
        SELECT periods.period, coalesce(cur.active, 0), coalesce(cur.retained, 0),
               coalesce(prev.active, 0),
               CASE WHEN $1 = 'day'
                    THEN (SELECT coalesce(sum(customers), 0) FROM metrics.first_day_totals f
                          WHERE f.first_day = periods.period)
                    ELSE (SELECT coalesce(sum(customers), 0) FROM metrics.cohort_counts cc
                          WHERE cc.kind = $1 AND cc.cohort = periods.period
                            AND cc.period = periods.period) END
        FROM periods
        LEFT JOIN metrics.period_counts cur ON cur.kind = $1 AND cur.period = periods.period
        LEFT JOIN metrics.period_counts prev
          ON prev.kind = $1 AND prev.period = metrics.period_shift($1, periods.period, -1)
        ORDER BY periods.period
        """,
        kind,
        start,
        end,
    )
    result = []
    for period, active, retained, previous, new in rows:
        retention = _ratio(retained, previous)
        result.append(
            {
                "period": period,
                "active": active,
                "new": int(new),
                "previous_active": previous,
                "retained": retained,
                "churned": previous - retained,
                "retention_rate": retention,
                "churn_rate": None if retention is None else 1 - retention,
            }
        )
    return result


async def cohorts(
    driver: Driver, *, kind: Literal["week", "month"], start: date, end: date, periods: int
) -> list[dict[str, Any]]:
    """Per cohort (customers first seen in a period): its size and the share of it
    active in each of the ``periods`` periods from the first."""
    rows = await driver.fetch(
        """
        SELECT cohort, period, customers FROM metrics.cohort_counts
        WHERE kind = $1 AND cohort BETWEEN metrics.period_start($1, $2)
                                       AND metrics.period_start($1, $3)
          AND period < metrics.period_shift($1, cohort, $4)
          AND customers > 0
        ORDER BY cohort, period
        """,
        kind,
        start,
        end,
        periods,
    )
    by_cohort: dict[date, dict[date, int]] = {}
    for cohort, period, customers in rows:
        by_cohort.setdefault(cohort, {})[period] = customers
    result = []
    for cohort, counts in by_cohort.items():
        size = counts.get(cohort, 0)
        if not size:
            # a cohort its customers left (seen earlier since: a history imported
            # newest-first) keeps rows of 0; a cohort is its customers, so it is gone
            continue
        # periods after ``end`` have not happened (yet): None, not 0
        last = period_start(kind, end)
        active: list[int | None] = [
            counts.get(shift_period(kind, cohort, k), 0)
            if shift_period(kind, cohort, k) <= last
            else None
            for k in range(periods)
        ]
        result.append(
            {
                "cohort": cohort,
                "customers": size,
                "active": active,
                "retention": [None if a is None else _ratio(a, size) for a in active],
            }
        )
    return result


async def revenue(
    driver: Driver, *, kind: PeriodKind, start: date, end: date
) -> list[dict[str, Any]]:
    """Revenue, orders, average order value, revenue per active customer, and the
    cumulative LTV (revenue to date over customers to date) per period."""
    rows = await driver.fetch(
        """
        -- every period of the range is in the series, as in activity's: a period
        -- without orders or arrivals has 0 of each and the running totals before it
        WITH periods AS (
            SELECT p::date AS period FROM generate_series(
                metrics.period_start($1, $2), metrics.period_start($1, $3),
                CASE $1 WHEN 'day' THEN interval '1 day' WHEN 'week' THEN interval '7 days'
                        ELSE interval '1 month' END) AS p
        ), joined AS (
            SELECT period, sum(orders) AS orders, sum(revenue) AS revenue, sum(new) AS new
            FROM (
                SELECT metrics.period_start($1, day), orders, revenue, 0
                FROM metrics.daily_totals
                UNION ALL
                SELECT metrics.period_start($1, first_day), 0, 0, customers
                FROM metrics.first_day_totals
                UNION ALL
                SELECT period, 0, 0, 0 FROM periods
            ) AS parts(period, orders, revenue, new)
            GROUP BY period
        ), running AS (
            SELECT period, orders, revenue, new,
                   sum(revenue) OVER (ORDER BY period) AS revenue_to_date,
                   sum(new) OVER (ORDER BY period) AS customers_to_date
            FROM joined
        )
        SELECT r.period, r.orders, r.revenue, r.new, r.revenue_to_date, r.customers_to_date,
               coalesce(pc.active, 0)
        FROM running r
        LEFT JOIN metrics.period_counts pc ON pc.kind = $1 AND pc.period = r.period
        WHERE r.period BETWEEN metrics.period_start($1, $2) AND metrics.period_start($1, $3)
        ORDER BY r.period
        """,
        kind,
        start,
        end,
    )
    return [
        {
            "period": period,
            "orders": int(orders),
            "revenue": float(rev),
            "average_order_value": _ratio(float(rev), int(orders)),
            "active": active,
            "revenue_per_active_customer": _ratio(float(rev), active),
            "new_customers": int(new),
            "ltv_to_date": _ratio(float(to_date), int(customers)),
        }
        for period, orders, rev, new, to_date, customers, active in rows
    ]


async def customer_value(
    driver: Driver, *, kind: Literal["week", "month"], start: date | None, end: date | None
) -> dict[str, Any]:
    """All-time customer value: repeat-purchase rate, revenue and LTV per customer,
    and per cohort (first seen in ``start``..``end``)."""
    rows = await driver.fetch(
        """
        SELECT metrics.period_start($1, first_day) AS cohort, sum(customers), sum(buyers),
               sum(repeat_buyers), sum(revenue), sum(orders)
        FROM metrics.first_day_totals
        WHERE ($2::date IS NULL OR first_day >= metrics.period_start($1, $2))
          AND ($3::date IS NULL
               OR first_day < metrics.period_shift($1, metrics.period_start($1, $3), 1))
        GROUP BY 1 HAVING sum(customers) > 0 ORDER BY 1
        """,
        kind,
        start,
        end,
    )
    total = await driver.fetchrow(
        "SELECT coalesce(sum(customers), 0), coalesce(sum(buyers), 0), "
        "coalesce(sum(repeat_buyers), 0), coalesce(sum(revenue), 0), coalesce(sum(orders), 0) "
        "FROM metrics.first_day_totals"
    )
    customers, buyers, repeaters, rev, orders = (
        int(total[0]),
        int(total[1]),
        int(total[2]),
        total[3],
        total[4],
    )
    return {
        "customers": customers,
        "buyers": buyers,
        "repeat_buyers": repeaters,
        "repeat_purchase_rate": _ratio(repeaters, buyers),
        "revenue": float(rev),
        "orders": int(orders),
        "average_order_value": _ratio(float(rev), int(orders)),
        "revenue_per_customer": _ratio(float(rev), customers),
        "revenue_per_buyer": _ratio(float(rev), buyers),
        "cohorts": [
            {
                "cohort": cohort,
                "customers": int(n),
                "buyers": int(b),
                "repeat_purchase_rate": _ratio(int(r), int(b)),
                "revenue": float(cr),
                "orders": int(co),
                "ltv": _ratio(float(cr), int(n)),
            }
            for cohort, n, b, r, cr, co in rows
        ],
    }


async def satisfaction(
    driver: Driver, *, start: date, end: date, journey_id: str | None
) -> dict[str, Any]:
    """NPS (% promoters 9–10 minus % detractors 0–6) and CSAT (% of 4–5 on 1–5)."""
    rows = await driver.fetch(
        """
        SELECT kind, score, sum(answers) FROM metrics.survey_daily
        WHERE day BETWEEN $1 AND $2 AND ($3::text IS NULL OR journey_id = $3)
        GROUP BY kind, score
        """,
        start,
        end,
        journey_id,
    )
    nps = {int(s): int(n) for k, s, n in rows if k == "nps"}
    csat = {int(s): int(n) for k, s, n in rows if k == "csat"}
    nps_total = sum(nps.values())
    promoters = sum(n for s, n in nps.items() if s >= 9)
    detractors = sum(n for s, n in nps.items() if s <= 6)
    csat_total = sum(csat.values())
    satisfied = sum(n for s, n in csat.items() if s >= 4)
    return {
        "nps": None if not nps_total else 100 * (promoters - detractors) / nps_total,
        "nps_answers": nps_total,
        "promoters": promoters,
        "passives": nps_total - promoters - detractors,
        "detractors": detractors,
        "csat": None if not csat_total else 100 * satisfied / csat_total,
        "csat_answers": csat_total,
        "csat_mean": _ratio(sum(s * n for s, n in csat.items()), csat_total),
    }


async def funnel(
    driver: Driver,
    *,
    start: date,
    end: date,
    filters: dict[str, str | None],
    group_by: Sequence[str],
) -> list[dict[str, Any]]:
    """The messaging funnel summed over ``start``..``end`` by ``group_by``."""
    dims = [d for d in group_by if d in FUNNEL_DIMENSIONS]
    select = ", ".join(dims)
    rows = await driver.fetch(
        f"""
        SELECT {select + "," if dims else ""} metric, reason, sum(count)
        FROM metrics.funnel_daily
        WHERE day BETWEEN $1 AND $2
          AND ($3::text IS NULL OR journey_id = $3) AND ($4::text IS NULL OR step_id = $4)
          AND ($5::text IS NULL OR variant = $5) AND ($6::text IS NULL OR channel = $6)
        GROUP BY {select + "," if dims else ""} metric, reason
        ORDER BY {select + "," if dims else ""} metric, reason
        """,
        start,
        end,
        filters.get("journey_id"),
        filters.get("step_id"),
        filters.get("variant"),
        filters.get("channel"),
    )
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[: len(dims)])
        metric, reason, count = row[len(dims)], row[len(dims) + 1], int(row[len(dims) + 2])
        group = groups.setdefault(
            key,
            {
                **dict(zip(dims, key, strict=True)),
                **dict.fromkeys(FUNNEL_METRICS, 0),
                "suppressed_by_reason": {},
                "failed_by_reason": {},
                "deferred_by_reason": {},
            },
        )
        group[metric] = group.get(metric, 0) + count
        if metric in ("suppressed", "failed", "deferred"):
            by_reason = group[f"{metric}_by_reason"]
            by_reason[reason or "unknown"] = by_reason.get(reason or "unknown", 0) + count
    for group in groups.values():
        sent = group["sent"]
        group["rates"] = {
            "delivery_rate": _ratio(group["delivered"], sent),
            "bounce_rate": _ratio(group["bounced"], sent),
            "open_rate": _ratio(group["opened"], sent),
            "click_rate": _ratio(group["clicked"], sent),
            "click_to_open_rate": _ratio(group["clicked"], group["opened"]),
            "unsubscribe_rate": _ratio(group["unsubscribed"], sent),
            "conversion_rate": _ratio(group["converted"], sent),
            "redemption_rate": _ratio(group["redeemed"], sent),
        }
    return list(groups.values())


async def uplift(driver: Driver, *, journey_id: str, retention_days: int) -> dict[str, Any]:
    """Entrants against the holdout: conversion (from journey.runs) and retention
    (converted within ``retention_days`` of entering, or active on any of the
    ``retention_days`` days after the day of entering).

    The day of entering itself counts only through a conversion: activity is kept per
    day, and the event that made the customer enter is activity on that day, so it
    would count every entrant as retained; a conversion is known to follow the entry.
    """
    arms = await driver.fetch(
        """
        SELECT variant, sum(exposed), sum(converted) FROM metrics.experiment_counts
        WHERE journey_id = $1 AND step_id = $2 GROUP BY variant
        """,
        journey_id,
        HOLDOUT_STEP,
    )
    counts = {v: (int(e), int(c)) for v, e, c in arms}
    # retention reads a day row per run: above RETENTION_SAMPLE runs an arm is measured
    # on a deterministic sample of its runs (by a hash of the run id), so the query's
    # cost stays bounded; the answer gives the sample's size
    rates = [
        min(1.0, RETENTION_SAMPLE / max(1, counts.get(arm, (0, 0))[0]))
        for arm in ("journey", "holdout")
    ]
    retained = await driver.fetch(
        """
        SELECT r.holdout, count(*), count(*) FILTER (WHERE
            r.converted_at <= r.entered_at + make_interval(days => $2::int) OR EXISTS (
            SELECT 1 FROM metrics.active_periods ap
            WHERE ap.customer_id = r.customer_id AND ap.kind = 'day'
              AND ap.period > r.entered_at::date AND ap.period <= r.entered_at::date + $2::int))
        FROM metrics.runs r
        WHERE r.journey_id = $1
          AND (hashtext(r.run_id) & 65535)
              < 65536 * CASE WHEN r.holdout THEN $4::float8 ELSE $3::float8 END
        GROUP BY r.holdout
        """,
        journey_id,
        retention_days,
        rates[0],
        rates[1],
    )
    kept = {bool(h): (int(n), int(k)) for h, n, k in retained}
    journey = counts.get("journey", (0, 0))
    holdout = counts.get("holdout", (0, 0))
    j_kept, h_kept = kept.get(False, (0, 0)), kept.get(True, (0, 0))

    def arm(exposed: int, converted: int) -> dict[str, Any]:
        low, high = wilson_interval(converted, exposed)
        return {
            "exposed": exposed,
            "converted": converted,
            "rate": _ratio(converted, exposed),
            "ci_low": low,
            "ci_high": high,
        }

    conv_p = two_proportion_ztest(holdout[1], holdout[0], journey[1], journey[0])[1]
    ret_p = two_proportion_ztest(h_kept[1], h_kept[0], j_kept[1], j_kept[0])[1]
    j_rate, h_rate = _ratio(journey[1], journey[0]), _ratio(holdout[1], holdout[0])
    jr, hr = _ratio(j_kept[1], j_kept[0]), _ratio(h_kept[1], h_kept[0])
    return {
        "journey_id": journey_id,
        "conversion": {
            "entrants": arm(*journey),
            "holdout": arm(*holdout),
            "uplift": None if j_rate is None or h_rate is None else j_rate - h_rate,
            "p_value": conv_p,
        },
        "retention": {
            "days": retention_days,
            "sampled": any(rate < 1 for rate in rates),
            "entrants": arm(*j_kept),
            "holdout": arm(*h_kept),
            "uplift": None if jr is None or hr is None else jr - hr,
            "p_value": ret_p,
        },
    }


async def segment_flows(
    driver: Driver, *, start: date, end: date, segment_id: str | None
) -> list[dict[str, Any]]:
    rows = await driver.fetch(
        """
        SELECT day, segment_id, entered, exited FROM metrics.segment_daily
        WHERE day BETWEEN $1 AND $2 AND ($3::text IS NULL OR segment_id = $3)
        ORDER BY segment_id, day
        """,
        start,
        end,
        segment_id,
    )
    return [
        {"day": d, "segment_id": s, "entered": int(e), "exited": int(x), "net": int(e) - int(x)}
        for d, s, e, x in rows
    ]


async def gauge_totals(driver: Driver) -> tuple[float, float, int]:
    """(LTV to date, repeat-purchase rate, outbox backlog) for the gauges."""
    value = await driver.fetchrow(
        "SELECT coalesce(sum(revenue) / nullif(sum(customers), 0), 0), "
        "coalesce(sum(repeat_buyers)::float8 / nullif(sum(buyers), 0), 0) "
        "FROM metrics.first_day_totals"
    )
    backlog = await driver.fetchval("SELECT coalesce(sum(messages), 0) FROM metrics.outbox")
    return float(value[0]), float(value[1]), int(backlog)
