# ruff: noqa: E501  (generated rows and SQL read best on one line)
"""``tenure bench metrics``: the metrics service's aggregation and KPI queries, beside
baselines measured in the same run on the same PostgreSQL.

1. **aggregation**: a mix of every consumed topic (customer events with orders and
   engagement, dispatch requests and outcomes, journey runs, segment changes) as raw
   bytes, decoded and applied in batches of 5,000 by the service's own
   :class:`~services.metrics.consumer.MetricsBatchHandler` (claims, fold, upserts,
   one transaction per batch), in two processes (two consumer replicas, one per core),
   each with the customers of its partitions. Figure: events/s. Baseline: asyncpg COPY of one row per
   event into a scratch table, one transaction per batch. The broker is left out: its
   fetch is the consumer runner's and is measured by the segmenter's benchmark.
2. **queries**: ``customers`` customers with ``events_per_customer`` activity events
   each over a year, written set-based in SQL into the metrics tables with the counts
   the consumer keeps; then every KPI query of the API, the median of 3 runs each.
   Baseline: monthly active customers counted from the activity table directly
   (``count(DISTINCT …)``), which is what the incremental counts spare every query.

Exit status as in :mod:`tenure.bench`.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import random
import statistics
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from services.metrics import queries
from services.metrics.consumer import DECODERS, MetricsBatchHandler
from shared.collector import tuned_for_throughput
from shared.db.engine import create_engine
from shared.events import (
    customer_events,
    dispatch_outcomes,
    dispatch_requests,
    journey_runs,
    segment_changes,
)
from shared.events import engagement as eng
from shared.events.channels import Channel
from shared.events.customer_events import CustomerEvent, EventType
from shared.events.dispatch_outcomes import DispatchOutcome, Status
from shared.events.dispatch_requests import DispatchRequest
from shared.events.journey_runs import JourneyRunEvent, RunEventKind
from shared.events.segment_changes import Change, SegmentChange
from shared.kafka.consumer import Record
from shared.settings import DatabaseSettings
from tenure.bench.scratch import asyncpg_dsn, embedded_postgres, migrated_database, scratch_name

BATCH = 5_000
AGGREGATION_TARGET = 15_000.0  # events/s
QUERY_TARGET_S = 1.0
START = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class Figure:
    scenario: str
    value: float
    unit: str
    baseline: float | None = None
    target: str = ""
    met: bool | None = None

    def line(self) -> str:
        ratio = ""
        if self.baseline is not None and self.value:
            # a rate: share of the baseline's; a time: how many times faster than it
            times = self.unit == "s"
            value = self.baseline / self.value if times else self.value / self.baseline
            ratio = f"  ({value:.2f}x {'faster than' if times else 'of'} baseline)"
        verdict = "" if self.met is None else ("  PASS" if self.met else "  MISS")
        return (
            f"{self.scenario:<34} {self.value:>12,.3f} {self.unit:<9}{ratio}{verdict} {self.target}"
        )


def _track(n: int, customer: str, at: datetime, event: str, properties: dict[str, Any]) -> bytes:
    """The ``n``-th payload as a ``track`` call."""
    return CustomerEvent(
        type=EventType.TRACK,
        message_id=f"m{n}",
        user_id=customer,
        timestamp=at,
        received_at=at,
        event=event,
        properties=properties,
    ).to_bytes()


def _payloads(count: int, *, customers: int, seed: int = 1) -> list[tuple[str, bytes]]:
    """``count`` (topic, raw bytes) in the proportions of a busy day."""
    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    for n in range(count):
        customer = f"c{rng.randrange(customers)}"
        at = START + timedelta(seconds=rng.randrange(90 * 86_400))
        roll = rng.random()
        dispatch = f"d{rng.randrange(count // 4 + 1)}"
        attribution = {
            "journey_id": f"j{rng.randrange(10)}",
            "step_id": "s1",
            "variant": rng.choice("ab"),
        }
        if roll < 0.60:
            order = rng.random() < 0.1
            value = _track(
                n,
                customer,
                at,
                "Order Completed" if order else "Product Viewed",
                {"revenue": 25.0} if order else {"sku": "x"},
            )
            topic = customer_events.TOPIC
        elif roll < 0.70:
            opened = {
                eng.DISPATCH_ID: dispatch,
                eng.JOURNEY_ID: attribution["journey_id"],
                eng.STEP_ID: "s1",
                eng.VARIANT: attribution["variant"],
                eng.CHANNEL: "email",
            }
            value = _track(n, customer, at, eng.EMAIL_OPENED, opened)
            topic = customer_events.TOPIC
        elif roll < 0.75:
            value = DispatchRequest(
                dispatch_id=dispatch,
                customer_id=customer,
                channels=[Channel.EMAIL],
                template_id="t",
                requested_at=at,
                **attribution,
            ).to_bytes()
            topic = dispatch_requests.TOPIC
        elif roll < 0.88:
            value = DispatchOutcome(
                outcome_id=f"o{n}",
                dispatch_id=dispatch,
                customer_id=customer,
                status=rng.choice([Status.SENT, Status.DELIVERED]),
                channel=Channel.EMAIL,
                at=at,
                **attribution,
            ).to_bytes()
            topic = dispatch_outcomes.TOPIC
        elif roll < 0.97:
            kind = rng.choice(
                [RunEventKind.ENTERED, RunEventKind.STEP_REACHED, RunEventKind.CONVERTED]
            )
            value = JourneyRunEvent(
                event_id=f"e{n}",
                kind=kind,
                run_id=f"r{rng.randrange(count // 10 + 1)}",
                seq=0,
                customer_id=customer,
                journey_id=attribution["journey_id"],
                journey_version=1,
                at=at,
                entered_at=at,
                step_id="split" if kind is RunEventKind.STEP_REACHED else None,
                step_type="split" if kind is RunEventKind.STEP_REACHED else None,
                variant=attribution["variant"] if kind is RunEventKind.STEP_REACHED else None,
            ).to_bytes()
            topic = journey_runs.TOPIC
        else:
            value = SegmentChange(
                change_id=f"g{n}",
                customer_id=customer,
                segment_id=f"seg{rng.randrange(5)}",
                segment_version=1,
                change=rng.choice([Change.ENTERED, Change.EXITED]),
                at=at,
            ).to_bytes()
            topic = segment_changes.TOPIC
        out.append((topic, value))
    return out


REPLICAS = 2


def _partition_of(value: bytes) -> int:
    """The customer's partition, as the producer's key would place it (any stable hash)."""
    import orjson

    doc = orjson.loads(value)
    key = doc.get("customerId") or doc.get("userId") or doc.get("anonymousId") or ""
    return zlib.crc32(key.encode())


def _replica(url: str, raw: list[tuple[str, bytes]]) -> tuple[int, float]:
    """A replica's work in a process of its own: decode and apply every batch; return
    how many events it applied and the seconds it took (process start-up excluded)."""

    async def run() -> tuple[int, float]:
        engine = create_engine(DatabaseSettings(url=url, pool_size=2))
        handler = MetricsBatchHandler(
            engine=engine,
            purchase_event="Order Completed",
            goals=frozenset({"Order Completed"}),
            attribution_window=timedelta(hours=72),
        )
        started = time.perf_counter()
        try:
            with tuned_for_throughput():
                for start in range(0, len(raw), BATCH):
                    records = [
                        Record(topic, 0, offset, None, DECODERS[topic](value), 0)
                        for offset, (topic, value) in enumerate(raw[start : start + BATCH], start)
                    ]
                    await handler(records)
        finally:
            await engine.dispose()
        return len(raw), time.perf_counter() - started

    return asyncio.run(run())


async def _new_database(server: str, purpose: str) -> str:
    return await migrated_database(server, scratch_name(f"metrics_{purpose}"), "metrics")


async def aggregation(server: str, *, events: int, log: Callable[[str], None]) -> list[Figure]:
    url = await _new_database(server, "aggregation")
    raw = _payloads(events, customers=max(1_000, events // 8))
    baseline_conn = await asyncpg.connect(asyncpg_dsn(url))
    await baseline_conn.execute(
        "CREATE UNLOGGED TABLE IF NOT EXISTS public.copy_baseline (topic text, value bytea)"
    )
    started = time.perf_counter()
    for start in range(0, len(raw), BATCH):
        async with baseline_conn.transaction():
            await baseline_conn.copy_records_to_table(
                "copy_baseline", records=raw[start : start + BATCH], schema_name="public"
            )
    copy_rate = len(raw) / (time.perf_counter() - started)
    await baseline_conn.close()
    log(f"baseline COPY: {copy_rate:,.0f} rows/s")
    # one process per core, each a consumer replica with the partitions of its customers
    parts: list[list[tuple[str, bytes]]] = [[] for _ in range(REPLICAS)]
    for topic, value in raw:
        parts[_partition_of(value) % REPLICAS].append((topic, value))
    context = mp.get_context("spawn")
    with context.Pool(REPLICAS) as pool:
        # the processes import the service before the clock starts
        pool.starmap(_replica, [(url, []) for _ in range(REPLICAS)])
        done = pool.starmap(_replica, [(url, part) for part in parts])
    # the replicas ran together: the rate is all events over the slower one's time
    rate = sum(n for n, _ in done) / max(seconds for _, seconds in done)
    log(f"replicas: {', '.join(f'{n:,} events in {t:.1f}s' for n, t in done)}")
    log(f"aggregation: {rate:,.0f} events/s")
    return [
        Figure("aggregation: copy (baseline)", copy_rate, "rows/s"),
        Figure(
            "aggregation: handler",
            rate,
            "events/s",
            baseline=copy_rate,
            target=f">= {AGGREGATION_TARGET:,.0f} events/s",
            met=rate >= AGGREGATION_TARGET,
        ),
    ]


GENERATE = """
INSERT INTO metrics.active_periods (customer_id, kind, period)
SELECT DISTINCT 'c' || c, 'day', DATE '2025-01-01' + least(364, floor(random() * random() * 365)::int + (c % 200))
FROM generate_series(1, $1::int) AS c, generate_series(1, $2::int) AS e;
INSERT INTO metrics.active_periods (customer_id, kind, period)
SELECT DISTINCT customer_id, k.kind, metrics.period_start(k.kind, period)
FROM metrics.active_periods, unnest(ARRAY['week', 'month']) AS k(kind) WHERE active_periods.kind = 'day';
INSERT INTO metrics.customers (customer_id, first_day, orders, revenue)
SELECT customer_id, min(period), (random() * 4)::int, 0 FROM metrics.active_periods
WHERE kind = 'day' GROUP BY customer_id;
UPDATE metrics.customers SET revenue = orders * 30;
INSERT INTO metrics.first_day_totals
SELECT first_day, count(*), count(*) FILTER (WHERE orders >= 1), count(*) FILTER (WHERE orders >= 2),
       sum(orders), sum(revenue) FROM metrics.customers GROUP BY first_day;
INSERT INTO metrics.period_counts (kind, period, active, retained)
SELECT a.kind, a.period, count(*), count(p.customer_id) FROM metrics.active_periods a
LEFT JOIN metrics.active_periods p ON p.customer_id = a.customer_id AND p.kind = a.kind
 AND p.period = metrics.period_shift(a.kind, a.period, -1)
GROUP BY a.kind, a.period;
INSERT INTO metrics.cohort_counts (kind, cohort, period, customers)
SELECT a.kind, metrics.period_start(a.kind, c.first_day), a.period, count(*)
FROM metrics.active_periods a JOIN metrics.customers c USING (customer_id)
WHERE a.kind <> 'day' GROUP BY 1, 2, 3;
INSERT INTO metrics.daily_totals (day, events, orders, revenue)
SELECT period, count(*) * $2, count(*) / 5, count(*) * 6.0 FROM metrics.active_periods
WHERE kind = 'day' GROUP BY period;
INSERT INTO metrics.funnel_daily (day, journey_id, step_id, variant, channel, metric, reason, count)
SELECT DATE '2025-01-01' + d, 'j' || j, 's' || s, v, 'email', m, '', (random() * 1000)::int
FROM generate_series(0, 364) d, generate_series(1, 10) j, generate_series(1, 3) s,
     unnest(ARRAY['a', 'b']) v,
     unnest(ARRAY['requested', 'sent', 'delivered', 'opened', 'clicked', 'converted', 'unsubscribed', 'bounced']) m;
INSERT INTO metrics.survey_daily (day, kind, journey_id, score, answers)
SELECT DATE '2025-01-01' + d, 'nps', '', s, (random() * 50)::int
FROM generate_series(0, 364) d, generate_series(0, 10) s;
INSERT INTO metrics.runs (run_id, journey_id, journey_version, customer_id, entered_at, holdout)
SELECT 'r' || c, 'j1', 1, 'c' || c, TIMESTAMPTZ '2025-03-01' + (c % 200) * interval '1 day', c % 10 = 0
FROM generate_series(1, $1::int / 10) c;
INSERT INTO metrics.experiment_counts
SELECT 'j1', 1, '(holdout)', CASE WHEN holdout THEN 'holdout' ELSE 'journey' END, count(*), count(*) / 10
FROM metrics.runs GROUP BY holdout;
ANALYZE
"""


async def _timed(call: Callable[[], Awaitable[Any]], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def kpi_queries(
    server: str, *, customers: int, events_per_customer: int, log: Callable[[str], None]
) -> list[Figure]:
    url = await _new_database(server, "queries")
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        started = time.perf_counter()
        for statement in GENERATE.split(";\n"):
            sql = statement.replace("$1::int", str(int(customers))).replace(
                "$1", str(int(customers))
            )
            await conn.execute(
                sql.replace("$2::int", str(int(events_per_customer))).replace(
                    "$2", str(int(events_per_customer))
                )
            )
        log(
            f"generated {customers:,} customers, {customers * events_per_customer:,} events "
            f"in {time.perf_counter() - started:.0f}s"
        )
        start, end = date(2025, 1, 1), date(2025, 12, 31)
        baseline = await _timed(
            lambda: conn.fetch(
                "SELECT date_trunc('month', period), count(DISTINCT customer_id) "
                "FROM metrics.active_periods WHERE kind = 'day' GROUP BY 1"
            )
        )
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "activity (month, 1 year)": lambda: queries.activity(
                conn, kind="month", start=start, end=end
            ),
            "activity (week, 1 year)": lambda: queries.activity(
                conn, kind="week", start=start, end=end
            ),
            "activity (day, 1 year)": lambda: queries.activity(
                conn, kind="day", start=start, end=end
            ),
            "cohorts (month x 12)": lambda: queries.cohorts(
                conn, kind="month", start=start, end=end, periods=12
            ),
            "cohorts (week x 12)": lambda: queries.cohorts(
                conn, kind="week", start=start, end=end, periods=12
            ),
            "revenue (month)": lambda: queries.revenue(conn, kind="month", start=start, end=end),
            "customers, LTV per cohort": lambda: queries.customer_value(
                conn, kind="month", start=None, end=None
            ),
            "satisfaction (1 year)": lambda: queries.satisfaction(
                conn, start=start, end=end, journey_id=None
            ),
            "funnel (1 year, by journey)": lambda: queries.funnel(
                conn, start=start, end=end, filters={}, group_by=["journey_id"]
            ),
            "funnel (1 year, by day)": lambda: queries.funnel(
                conn,
                start=start,
                end=end,
                filters={"journey_id": "j1"},
                group_by=["day", "variant"],
            ),
            "uplift (30-day retention)": lambda: queries.uplift(
                conn, journey_id="j1", retention_days=30
            ),
        }
        figures = [Figure("query: count distinct (baseline)", baseline, "s")]
        for name, call in calls.items():
            seconds = await _timed(call)
            figures.append(
                Figure(
                    f"query: {name}",
                    seconds,
                    "s",
                    baseline=baseline,
                    target=f"< {QUERY_TARGET_S:g} s",
                    met=seconds < QUERY_TARGET_S,
                )
            )
            log(f"{name}: {seconds * 1000:.1f} ms")
        return figures
    finally:
        await conn.close()


async def run_metrics_bench(*, quick: bool, log: Callable[[str], None]) -> list[Figure]:
    server = os.environ.get("DATABASE_URL")
    postgres = None
    if not server:
        state = Path(tempfile.mkdtemp(prefix="tenure-bench-metrics-"))
        log("starting the embedded PostgreSQL …")
        postgres, server = await embedded_postgres(state)
    try:
        figures = await aggregation(server, events=40_000 if quick else 300_000, log=log)
        figures += await kpi_queries(
            server, customers=100_000 if quick else 1_000_000, events_per_customer=10, log=log
        )
        return figures
    finally:
        if postgres is not None:
            await asyncio.to_thread(postgres.stop)


def metrics_bench(*, duration_s: float, quick: bool) -> int:
    """The CLI entry: print the figures; 1 when a full run missed a target."""

    def log(message: str) -> None:
        print(f"bench metrics: {message}", flush=True)

    figures = asyncio.run(run_metrics_bench(quick=quick, log=log))
    print()
    print(f"{'scenario':<34} {'value':>12} unit")
    for figure in figures:
        print(figure.line())
    print(
        f"(machine: {os.cpu_count()} cores, shared with other work; "
        f"{'quick: smaller data, timings indicative only' if quick else 'full run'})"
    )
    missed = [f for f in figures if f.met is False]
    return 1 if missed and not quick else 0
