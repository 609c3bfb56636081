"""``tenure bench scoring``: a segmenter refit (churn model, RFM, LTV) at a million customers.

The data (set-based SQL, deterministic): customers arrive over two years, buy as a
Poisson process until they leave (exponential lifetimes whose means vary), a fifth only browse, and
sessions (``Session Started``) come with the buying rate. About nine rollup rows per
customer. Two refits run on it, through :func:`refit_scores` as the service runs them:

1. the first, where every profile's scores change (each gets a ``profiles`` message);
2. a second at the same ``now`` (steady state: few scores move materially).

Each refit's phases (read, fit in a worker thread, write, segments) are printed beside
the baseline measured in the same run: asyncpg ``COPY`` of the same score rows (read
back from ``profiles`` after the first refit) into an unindexed table.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from services.segmenter.catalog_cache import CatalogCache
from services.segmenter.schemas import FitReport
from services.segmenter.scoring.refit import RefitOptions
from services.segmenter.scoring_job import refit_scores
from shared.db.engine import create_engine
from shared.settings import DatabaseSettings
from tenure.bench.scratch import copy_baseline, embedded_database, run_in_scratch

FULL_CUSTOMERS = 1_000_000
QUICK_CUSTOMERS = 50_000


def fill_sql(customers: int) -> list[str]:
    """Statements making the population, relative to the bound date ``:today``."""
    return [
        "SELECT setseed(0.2026)",
        f"""
        CREATE TEMPORARY TABLE people ON COMMIT DROP AS
        SELECT 'c-' || lpad(i::text, 8, '0') AS customer_id, start_off, rate,
               least(start_off, life)::int AS alive, browser, spend
        FROM (
            SELECT i, 30 + floor(random() * 700)::int AS start_off,
                   -ln(1 - random()) * 0.03 AS rate,
                   -ln(1 - random()) * (20 + random() * random() * 1500) AS life,
                   random() < 0.2 AS browser, 15 - ln(1 - random()) * 50 AS spend
            FROM generate_series(1, {int(customers)}) AS i
        ) AS drawn
        """,
        """
        INSERT INTO segmenter.profiles (customer_id, first_seen_at, last_seen_at, version)
        SELECT customer_id,
               (CAST(:today AS date) - start_off) + time '08:00' AT TIME ZONE 'UTC',
               (CAST(:today AS date) - start_off + alive) + time '20:00' AT TIME ZONE 'UTC', 1
        FROM people
        """,
        """
        INSERT INTO segmenter.event_rollups
            (customer_id, event_name, day, dimension, count, value_sum)
        SELECT customer_id, event_name, day, '', sum(n), sum(v)
        FROM (
            SELECT customer_id, 'Order Completed' AS event_name,
                   CAST(:today AS date) - start_off
                   + CASE WHEN k = 0 THEN 0 ELSE floor(random() * alive)::int END AS day,
                   1 AS n, round((spend * (0.5 + random()))::numeric, 2)::float8 AS v
            FROM people
            CROSS JOIN LATERAL generate_series(0, least(floor(rate * alive)::int, 20)) AS k
            WHERE NOT browser
            UNION ALL
            SELECT customer_id, 'Session Started',
                   CAST(:today AS date) - start_off + floor(random() * alive)::int,
                   1 + floor(random() * 3)::int, 0
            FROM people
            CROSS JOIN LATERAL generate_series(
                0, least(floor((0.02 + 2 * rate) * alive / 3)::int, 10)) AS k
        ) AS rows
        GROUP BY customer_id, event_name, day
        """,
        """
        INSERT INTO segmenter.event_stats
            (customer_id, event_name, count, value_sum, first_at, last_at)
        SELECT customer_id, event_name, sum(count), sum(value_sum),
               min(day) + time '10:00' AT TIME ZONE 'UTC',
               max(day) + time '10:00' AT TIME ZONE 'UTC'
        FROM segmenter.event_rollups GROUP BY customer_id, event_name
        """,
        "ANALYZE segmenter.profiles",
        "ANALYZE segmenter.event_stats",
        "ANALYZE segmenter.event_rollups",
    ]


async def _copy_baseline(url: str) -> tuple[float, int]:
    """Seconds to COPY the profiles' score rows into an unindexed table, and how many."""
    return await copy_baseline(
        url,
        select=(
            "SELECT customer_id, churn_risk, predicted_ltv, rfm_recency, rfm_frequency, "
            "rfm_monetary, rfm_tier, score_method, score_explanation::text, scored_at "
            "FROM segmenter.profiles"
        ),
        create=(
            "CREATE UNLOGGED TABLE copy_baseline (customer_id text, churn_risk float8, "
            "predicted_ltv float8, r int2, f int2, m int2, tier text, method text, "
            "explanation text, scored_at timestamptz)"
        ),
    )


def _line(report: FitReport, label: str, copy_s: float) -> str:
    phases = "  ".join(f"{k} {v:.1f}" for k, v in report.phases.items())
    return (
        f"{label:<22} {report.seconds:7.1f} s  x{report.seconds / copy_s:5.1f} COPY   {phases}"
        f"   churn {report.method}"
    )


async def run(customers: int, log_dir: Path) -> int:
    async with embedded_database(log_dir, "segmenter", "scoring") as url:
        engine = create_engine(DatabaseSettings(url=url))
        now = datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        async with engine.begin() as conn:
            for statement in fill_sql(customers):
                await conn.execute(text(statement), {"today": now.date()})
            rollups = await conn.scalar(text("SELECT count(*) FROM segmenter.event_rollups"))
        print(
            f"made {customers:,} customers, {rollups:,} rollup rows "
            f"in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
        catalog = await CatalogCache(engine).current()
        options = RefitOptions(engagement_events=("Session Started",))
        first = await refit_scores(engine, catalog, now=now, options=options)
        second = await refit_scores(engine, catalog, now=now, options=options)
        await engine.dispose()
        copy_s, copied = await _copy_baseline(url)
        print(f"\nrefit of {customers:,} customers ({rollups:,} rollup rows), 2 cores, shared")
        print(f"{'COPY score rows':<22} {copy_s:7.1f} s  ({copied:,} rows, the baseline)")
        print(_line(first, "refit 1 (all change)", copy_s))
        print(_line(second, "refit 2 (steady)", copy_s))
        for candidate in first.churn.get("candidates", []):
            print(
                f"  backtest {candidate['name']:<8} AUC {candidate['auc']:.3f}  "
                f"Brier {candidate['brier']:.3f}  train {candidate['train_customers']:,} "
                f"({candidate['train_churners']:,} churned)  test "
                f"{candidate['test_customers']:,} ({candidate['test_churners']:,} churned)"
            )
        print(f"  ltv: {first.ltv_method} ({first.ltv_reason})")
        return 0


def scoring_bench(*, duration_s: float, quick: bool, **_: float) -> int:
    """A refit at 1M customers (50,000 with ``--quick``); ``duration_s`` is not used."""
    customers = QUICK_CUSTOMERS if quick else FULL_CUSTOMERS
    return run_in_scratch("tenure-bench-scoring-", lambda state: run(customers, state))
