"""``tenure bench recommend``: recompute every customer's recommendations, as the
segmenter's job does, at 1M customers and 10M purchases (100,000 / 1M with ``--quick``).

The data (set-based SQL, deterministic): 20,000 products in 100 taste clusters and 20
categories; each customer has a cluster, makes 4–16 purchases (10 on average), 80% in
their cluster with a skew towards its first products, the rest anywhere (skewed to
popular products), and views 5 products of their cluster; times spread over a year.
Two recomputes run through :func:`recompute_recommendations`:

1. the first, where every customer's list is new (each gets a ``profiles`` message);
2. a second at the same ``now`` (steady state: nothing changes, nothing is published).

Each run's phases (read, fit, score, write) are printed beside the baseline measured in
the same run: asyncpg ``COPY`` of the stored lists into an unindexed table. Then the
loyalty ledger: 50,000 purchases in batches of 5,000 through ``apply_loyalty`` as the
consumer calls it (two entries each, a per-revenue one and a first-order bonus, then
each customer's balance and tier recomputed from their ledger and stored).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.segmenter.loyalty_rules import Program
from services.segmenter.recommend_job import RecomputeReport, recompute_recommendations
from services.segmenter.repository.loyalty import apply_loyalty
from shared.db.engine import create_engine
from shared.events.customer_events import CustomerEvent
from shared.settings import DatabaseSettings
from tenure.bench.scratch import copy_baseline, embedded_database, run_in_scratch

FULL_CUSTOMERS = 1_000_000
QUICK_CUSTOMERS = 100_000
PRODUCTS = 20_000
CLUSTERS = 100
PURCHASE = "Order Completed"


def fill_sql(customers: int) -> list[str]:
    per_cluster = PRODUCTS // CLUSTERS
    return [
        "SELECT setseed(0.16)",
        f"""
        INSERT INTO segmenter.products (product_id, category)
        SELECT 'p-' || lpad(i::text, 6, '0'), 'cat-' || (i % 20)
        FROM generate_series(0, {PRODUCTS - 1}) AS i ORDER BY i
        """,
        f"""
        CREATE TEMPORARY TABLE people ON COMMIT DROP AS
        SELECT 'c-' || lpad(i::text, 8, '0') AS customer_id,
               floor(random() * {CLUSTERS})::int AS cluster
        FROM generate_series(1, {int(customers)}) AS i
        """,
        """
        INSERT INTO segmenter.profiles (customer_id, first_seen_at, last_seen_at, version)
        SELECT customer_id, CAST(:now AS timestamptz) - interval '400 days', :now, 1 FROM people
        """,
        f"""
        INSERT INTO segmenter.interactions (customer_id, product_key, kind, count, last_at)
        SELECT customer_id, product_key, kind, count(*), max(at)
        FROM (
            SELECT p.customer_id, 0 AS kind,
                   1 + CASE WHEN random() < 0.8
                       THEN p.cluster * {per_cluster}
                            + floor(power(random(), 2) * {per_cluster})::int
                       ELSE floor(power(random(), 3) * {PRODUCTS})::int END AS product_key,
                   CAST(:now AS timestamptz) - random() * interval '365 days' AS at
            FROM people p
            CROSS JOIN LATERAL generate_series(1, 4 + floor(random() * 13)::int) AS k
            UNION ALL
            SELECT p.customer_id, 1,
                   1 + p.cluster * {per_cluster} + floor(random() * {per_cluster})::int,
                   CAST(:now AS timestamptz) - random() * interval '60 days'
            FROM people p CROSS JOIN generate_series(1, 5) AS k
        ) AS drawn
        GROUP BY customer_id, product_key, kind
        """,
        "ANALYZE segmenter.interactions",
        "ANALYZE segmenter.profiles",
    ]


LEDGER_BATCH = 5_000
LEDGER_BATCHES = 10
LEDGER_PROGRAM = Program.model_validate(
    {
        "rules": [
            {
                "kind": "per_revenue",
                "id": "spend",
                "event": "Order Completed",
                "points_per_unit": 1,
            },
            {"kind": "first_event", "id": "welcome", "event": "Order Completed", "points": 100},
        ],
        "tiers": [
            {"name": "Member", "min_points": 0},
            {"name": "Silver", "min_points": 500, "multiplier": 1.25},
        ],
    }
)


async def _ledger_rate(engine: AsyncEngine, *, customers: int, now: datetime) -> tuple[float, int]:
    """Ledger entries written per second by :func:`apply_loyalty`, in the consumer's
    batches (a purchase per customer, distinct customers, profiles present)."""
    entries = 0
    elapsed = 0.0
    for batch in range(LEDGER_BATCHES):
        by_customer: dict[str, list[CustomerEvent]] = {}
        for i in range(LEDGER_BATCH):
            customer = f"c-{(batch * LEDGER_BATCH + i) % customers + 1:08d}"
            by_customer[customer] = [
                CustomerEvent.model_validate(
                    {
                        "type": "track",
                        "event": "Order Completed",
                        "messageId": f"ledger-{batch}-{i}",
                        "userId": customer,
                        "timestamp": now,
                        "receivedAt": now,
                        "properties": {"revenue": 20 + i % 200},
                    }
                )
            ]
        started = time.perf_counter()
        async with engine.begin() as conn:
            await apply_loyalty(
                conn, program=LEDGER_PROGRAM, by_customer=by_customer, tiers={}, now=now
            )
        elapsed += time.perf_counter() - started
        entries += 2 * LEDGER_BATCH
    return entries / elapsed, entries


async def _copy_baseline(url: str) -> tuple[float, int]:
    """Seconds to COPY the stored lists into an unindexed table, and how many."""
    return await copy_baseline(
        url,
        select=("SELECT customer_id, items::text, computed_at FROM segmenter.recommendations"),
        create=(
            "CREATE UNLOGGED TABLE copy_baseline (customer_id text, items text, at timestamptz)"
        ),
    )


def _line(report: RecomputeReport, label: str, copy_s: float) -> str:
    phases = "  ".join(f"{k} {v:6.1f}" for k, v in report.phases.items())
    return (
        f"{label:<24} {report.seconds:7.1f} s  x{report.seconds / copy_s:5.1f} COPY   {phases}"
        f"   changed {report.changed:,}"
    )


async def run(customers: int, log_dir: Path) -> int:
    async with embedded_database(log_dir, "segmenter", "recommend") as url:
        engine = create_engine(DatabaseSettings(url=url))
        now = datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        async with engine.begin() as conn:
            for statement in fill_sql(customers):
                await conn.execute(text(statement), {"now": now})
            purchases = await conn.scalar(
                text("SELECT sum(count) FROM segmenter.interactions WHERE kind = 0")
            )
            rows = await conn.scalar(text("SELECT count(*) FROM segmenter.interactions"))
        print(
            f"made {customers:,} customers, {purchases:,} purchases, {rows:,} interaction rows "
            f"in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
        first = await recompute_recommendations(engine, now=now)
        second = await recompute_recommendations(engine, now=now)
        ledger = await _ledger_rate(engine, customers=customers, now=now)
        await engine.dispose()
        assert first is not None and second is not None
        copy_s, copied = await _copy_baseline(url)
        print(
            f"\nrecompute for {customers:,} customers, {purchases:,} purchases, "
            f"{PRODUCTS:,} products ({rows:,} interaction rows); 2 cores, shared machine"
        )
        print(f"{'COPY stored lists':<24} {copy_s:7.1f} s  ({copied:,} rows, the baseline)")
        print(_line(first, "recompute 1 (all new)", copy_s))
        print(_line(second, "recompute 2 (steady)", copy_s))
        print(
            f"{'loyalty ledger':<24} {ledger[0]:7,.0f} entries/s  ({ledger[1]:,} entries in "
            f"batches of {LEDGER_BATCH:,} purchases, each with its standing update; "
            "apply_loyalty as the consumer calls it)"
        )
        return 0


def recommend_bench(*, duration_s: float, quick: bool, **_: float) -> int:
    """A recompute at 1M customers (100,000 with ``--quick``); ``duration_s`` unused."""
    customers = QUICK_CUSTOMERS if quick else FULL_CUSTOMERS
    return run_in_scratch("tenure-bench-recommend-", lambda state: run(customers, state))
