"""Refit the churn / LTV models over the population and store every customer's score.

Each buyer's BG/NBD and Gamma-Gamma summary comes from the ``purchase_event``'s
daily rollups and statistics (:func:`purchase_summaries`): one occasion per UTC day
with purchases, frequency = repeat occasions, recency = last - first purchase,
T = now - first, monetary = mean value of the repeat occasions. The churn model's
snapshots (as of H days ago, labelled, and as of today) come from one more pass over
the rollups (:mod:`.scoring.churn_sql`). The fit runs in a worker thread
(:mod:`.scoring.refit`): ``churn_risk`` for every profile from the candidate that won
the backtest, RFM and LTV for buyers. Scores are written set-based (COPY + UPDATE);
segments that read scores are recomputed after; customers whose tier or churn
risk moved materially get a new ``profiles`` message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AbstractAsyncContextManager
from datetime import UTC, date, datetime
from datetime import time as day_time
from typing import Any

import numpy as np
import orjson
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.segmenter import repository as repo
from services.segmenter.backfill import DEFAULT_CHUNK, backfill, with_dependents
from services.segmenter.catalog import SegmentCatalog
from services.segmenter.metrics import SCORE_FIT_SECONDS, record_churn_metrics
from services.segmenter.models import Profile, ScoreFit
from services.segmenter.schemas import FitReport, LastFitPublic
from services.segmenter.scoring import CustomerSummary, ScoringResult
from services.segmenter.scoring.churn_sql import churn_snapshots
from services.segmenter.scoring.refit import RefitOptions, compute_refit
from services.segmenter.settings import SegmenterGroup
from shared.db.engine import driver_connection, long_statements
from shared.db.locks import lock_name, session_lock
from shared.db.tables import table_of

log = logging.getLogger(__name__)

DAY_S = 86_400.0
MATERIAL_CHURN_CHANGE = 0.1
#: the refit's reads only (one refit at a time): a million customers' groups fit in it
READ_WORK_MEM = "256MB"
REFIT_LOCK = lock_name("segmenter", "refit")
#: the earliest day a refit can be scored as of (the snapshots reach 2 H days before it)
EARLIEST_AS_OF = date(1970, 1, 1)
profiles = table_of(Profile)


def refit_lock(engine: AsyncEngine) -> AbstractAsyncContextManager[bool]:
    """Whether this process may refit now: one refit at a time across replicas and
    worker processes (each runs the refit as a :class:`shared.stopping.PeriodicJob`).
    A session lock on a connection of its own, held for the whole refit (which
    commits several transactions)."""
    return session_lock(engine, REFIT_LOCK)


async def last_fit_at(engine: AsyncEngine) -> datetime | None:
    async with engine.connect() as conn:
        fitted: datetime | None = await conn.scalar(
            select(func.max(table_of(ScoreFit).c.fitted_at))
        )
        return fitted


def scoring_time(now: datetime, as_of: date | None) -> datetime:
    """The moment a refit scores at: ``now``, or the end of the UTC day ``as_of`` when that
    is earlier (a backtest, or an imported history scored as of its own end). Raises
    ValueError for a day after ``now``'s."""
    if as_of is None:
        return now
    if as_of < EARLIEST_AS_OF:
        raise ValueError(f"as_of must be on or after {EARLIEST_AS_OF.isoformat()}")
    if as_of > now.astimezone(UTC).date():
        raise ValueError(f"as_of {as_of.isoformat()} is after today ({now.date().isoformat()})")
    return min(now, datetime.combine(as_of, day_time.max, UTC))


async def last_fit(engine: AsyncEngine, *, as_of: date | None = None) -> LastFitPublic | None:
    """The latest refit, or the latest one scored as of ``as_of``."""
    fits = table_of(ScoreFit)
    query = select(fits).order_by(fits.c.fitted_at.desc(), fits.c.id.desc()).limit(1)
    if as_of is not None:
        query = query.where(fits.c.params["as_of"].astext == as_of.isoformat())
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    params = dict(row.params)
    stored = params.get("as_of")
    return LastFitPublic(
        fitted_at=row.fitted_at,
        as_of=date.fromisoformat(stored) if stored else row.fitted_at.astimezone(UTC).date(),
        method=row.method,
        buyers=row.customers,
        repeat_buyers=row.repeat_buyers,
        churn=params.pop("churn", {}),
        params=params,
    )


def refit_options(group: SegmenterGroup) -> RefitOptions:
    return RefitOptions(
        purchase_event=group.purchase_event,
        churn_event=group.churn_event or None,
        churn_horizon_days=group.churn_horizon_days,
        engagement_events=tuple(group.churn_engagement_events),
        ltv_horizon_days=group.ltv_horizon_days,
        ltv_annual_discount_rate=group.ltv_annual_discount_rate,
    )


async def purchase_summaries(
    conn: AsyncConnection, *, purchase_event: str, now: datetime
) -> list[CustomerSummary]:
    """Each buyer's summary as of ``now``, with the conventions of :mod:`.scoring.summary`:
    a UTC day's purchases are one occasion, ``frequency`` counts the repeat occasions,
    ``monetary`` is their mean value. The occasions come from the daily rollups (kept for
    every activity event, all time) up to ``now``'s day, the first and last purchase times
    from the statistics. The last occasion's time is the last purchase's, where the
    summary convention takes that day's first: recency may be later by less than a day.

    Scoring in the past (``now`` before the last purchase or activity, a backtest): the
    purchases after ``now`` are ignored; the last occasion is then the start of the last
    purchase day up to ``now``'s, and the last activity the start of the last active
    day (the statistics only know the all-time last).
    """
    rows = await conn.execute(
        text(
            """
            WITH occasions AS (
                SELECT customer_id, count(*) AS occasions, sum(value_sum) AS total,
                       -- the first day's value without sorting each group: arrays
                       -- compare element by element, so the least is the first day's
                       (min(ARRAY[(day - DATE '2000-01-01')::float8, value_sum]))[2]
                           AS first_value,
                       max(day) AS last_day
                FROM segmenter.event_rollups
                WHERE event_name = :event AND dimension = '' AND day <= :today
                GROUP BY customer_id
            )
            SELECT s.customer_id, o.occasions, o.total, o.first_value, s.first_at, s.last_at,
                   p.last_seen_at, o.last_day
            FROM segmenter.event_stats s
            JOIN occasions o ON o.customer_id = s.customer_id
            JOIN segmenter.profiles p ON p.customer_id = s.customer_id
            WHERE s.event_name = :event AND s.first_at <= :now
            """
        ),
        {"event": purchase_event, "now": now, "today": now.astimezone(UTC).date()},
    )
    found = rows.all()
    seen_day = await _last_active_days(
        conn, [row[0] for row in found if row[6] > now], today=now.astimezone(UTC).date()
    )
    summaries = []
    for customer_id, occasions, total, first_value, first, last_at, last_seen_at, day in found:
        last = last_at if last_at <= now else max(_start_of(day), first)
        if last_seen_at > now:
            active = seen_day.get(customer_id)
            last_seen_at = _start_of(active) if active is not None else last
        seen = min(max(last_seen_at, last), now)
        repeats = occasions - 1
        summaries.append(
            CustomerSummary(
                customer_id=customer_id,
                frequency=float(repeats),
                recency=(last - first).total_seconds() / DAY_S if repeats else 0.0,
                T=(now - first).total_seconds() / DAY_S,
                monetary=(total - first_value) / repeats if repeats else 0.0,
                last_seen_days_ago=(now - seen).total_seconds() / DAY_S,
                total_value=total,
            )
        )
    return summaries


def _start_of(day: date) -> datetime:
    return datetime.combine(day, day_time.min, UTC)


async def _last_active_days(
    conn: AsyncConnection, ids: list[str], *, today: date
) -> dict[str, date]:
    """The last day with any activity up to ``today`` of customers active after ``now``."""
    if not ids:
        return {}
    rows = await conn.execute(
        text(
            "SELECT customer_id, max(day) FROM segmenter.event_rollups "
            "WHERE dimension = '' AND day <= :today AND customer_id = ANY(:ids) "
            "GROUP BY customer_id"
        ),
        {"today": today, "ids": ids},
    )
    return {row[0]: row[1] for row in rows}


async def refit_scores(
    engine: AsyncEngine,
    catalog: SegmentCatalog,
    *,
    now: datetime,
    options: RefitOptions,
    as_of: date | None = None,
    backfill_chunk: int = DEFAULT_CHUNK,
) -> FitReport:
    """Read the summaries and the churn snapshots (set-based), fit and score in a worker
    thread, write every profile's scores, then recompute the segments that read them.

    ``as_of`` scores as of the end of that UTC day (:func:`scoring_time`): only what
    happened up to it is read, and profiles first seen after it keep their scores."""
    at = scoring_time(now, as_of)
    started = time.perf_counter()
    definition = options.churn_definition
    async with engine.connect() as conn:
        await long_statements(conn)
        # both reads group the rollups by customer: in memory, not in sorted runs on disk
        await conn.execute(text(f"SET LOCAL work_mem = '{READ_WORK_MEM}'"))
        summaries = await purchase_summaries(conn, purchase_event=options.purchase_event, now=at)
        summaries_s = time.perf_counter() - started
        training, current = await churn_snapshots(
            conn,
            event=definition.event,
            horizon_days=definition.horizon_days,
            engagement_events=options.engagement_events,
            now=at,
        )
    read_s = time.perf_counter() - started
    outcome = await asyncio.to_thread(compute_refit, summaries, training, current, options, at)
    fit_s = time.perf_counter() - started - read_s
    result, churn = outcome.population, outcome.churn
    async with engine.begin() as conn:
        await long_statements(conn)
        write_started = time.perf_counter()
        changed = await _write_scores(conn, outcome.rows)
        await _publish_changed_profiles(conn, changed, now)
        params = _params(result, options)
        params["as_of"] = at.astimezone(UTC).date().isoformat()
        params["churn"] = churn.report()
        await conn.execute(
            insert(table_of(ScoreFit)).values(
                fitted_at=now,
                method=churn.method,
                customers=len(summaries),
                repeat_buyers=sum(1 for s in summaries if s.frequency > 0),
                params=_json_safe(params),
            )
        )
    write_s = time.perf_counter() - write_started
    readers = [s for s in catalog.segments if s.reads_scores]
    if readers:
        await backfill(
            engine,
            catalog,
            with_dependents(catalog, [s.id for s in readers]),
            now=now,
            cause="score",
            chunk=backfill_chunk,
        )
    seconds = time.perf_counter() - started
    SCORE_FIT_SECONDS.observe(seconds)
    record_churn_metrics(churn, customers=len(outcome.rows))
    log.info(
        "refit: %d profiles in %.1f s (read %.1f s, fit %.1f s); churn %s",
        len(outcome.rows),
        seconds,
        read_s,
        fit_s,
        churn.reason,
    )
    return FitReport(
        fitted_at=now,
        as_of=at.astimezone(UTC).date(),
        method=churn.method,
        reason=churn.reason,
        buyers=outcome.buyers,
        repeat_buyers=sum(1 for s in summaries if s.frequency > 0),
        non_buyers=outcome.non_buyers,
        params=_json_safe(params),
        seconds=seconds,
        churn=_json_safe(churn.report()),
        ltv_method=result.method,
        ltv_reason=result.reason,
        phases={
            "read": read_s,
            "read_summaries": summaries_s,
            "fit": fit_s,
            **{f"fit_{k}": v for k, v in outcome.seconds.items()},
            "write": write_s,
            "segments": seconds - read_s - fit_s - write_s,
        },
    )


def _params(result: ScoringResult, options: RefitOptions) -> dict[str, Any]:
    params: dict[str, Any] = {
        "reason": result.reason,
        "ltv_method": result.method,
        "horizon_days": result.horizon_days,
        "annual_discount_rate": options.ltv_annual_discount_rate,
    }
    if result.models is not None:
        params["bgnbd"] = _floats(result.models.bgnbd)
        gamma_gamma = result.models.gamma_gamma
        params["gamma_gamma"] = None if gamma_gamma is None else _floats(gamma_gamma)
    return params


def _floats(params: object) -> dict[str, float]:
    return (
        {k: float(v) for k, v in vars(params).items()}
        if hasattr(params, "__dict__")
        else {
            k: float(getattr(params, k))
            for k in params.__slots__  # type: ignore[attr-defined]
        }
    )


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


async def _write_scores(conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> list[str]:
    """COPY the scores into a temp table, UPDATE profiles from it; return who changed much."""
    await conn.execute(
        text(
            "CREATE TEMPORARY TABLE score_updates (customer_id text PRIMARY KEY, "
            "churn_risk float8, predicted_ltv float8, "
            "rfm_recency int2, rfm_frequency int2, rfm_monetary int2, "
            "rfm_tier text, score_method text, score_explanation text, scored_at timestamptz) "
            "ON COMMIT DROP"
        )
    )
    if rows:
        driver = await driver_connection(conn)
        # binary COPY has no jsonb encoder: explanations travel as text, cast below
        await driver.copy_records_to_table(
            "score_updates",
            records=[(*row[:8], orjson.dumps(row[8]).decode(), row[9]) for row in rows],
        )
    result = await conn.execute(
        text(
            """
        WITH old AS (
            SELECT p.customer_id, p.churn_risk, p.rfm_tier FROM segmenter.profiles p
            JOIN score_updates s USING (customer_id)
        ), updated AS (
            UPDATE segmenter.profiles p SET
                churn_risk = s.churn_risk, predicted_ltv = s.predicted_ltv,
                rfm_recency = s.rfm_recency, rfm_frequency = s.rfm_frequency,
                rfm_monetary = s.rfm_monetary, rfm_tier = s.rfm_tier,
                score_method = s.score_method,
                score_explanation = CAST(s.score_explanation AS jsonb),
                scored_at = s.scored_at
            FROM score_updates s WHERE p.customer_id = s.customer_id
            RETURNING p.customer_id, p.churn_risk, p.rfm_tier
        )
        SELECT u.customer_id FROM updated u JOIN old o USING (customer_id)
        WHERE o.churn_risk IS NULL
           OR abs(u.churn_risk - o.churn_risk) >= :material
           OR u.rfm_tier IS DISTINCT FROM o.rfm_tier
        """
        ),
        {"material": MATERIAL_CHURN_CHANGE},
    )
    return [row[0] for row in result]


async def _publish_changed_profiles(
    conn: AsyncConnection, ids: list[str], now: datetime, chunk: int = 10_000
) -> None:
    for start in range(0, len(ids), chunk):
        await repo.publish_profiles(conn, ids=ids[start : start + chunk], now=now)
