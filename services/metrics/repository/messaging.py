"""The batch's messaging: sends (touches), last-touch and coupon attribution of goal
events, first engagements per message, the funnel, surveys and segment flows.

Set-based statements on the asyncpg connection, inside the batch's transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from services.metrics.fold import Attribution, Engagement, FunnelKey, Touch
from shared.db.driver import columns_of

Driver = Any  # asyncpg.Connection


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
        *columns_of(touches, "dispatch_id", "customer_id", "at"),
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
            *columns_of(keyed, "dispatch_id", "metric"),
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
