"""``tenure bench segmenter``: the segmenter's consumer and sweep, beside raw COPY baselines.

Three scenarios, each on a database of its own (created on the embedded
PostgreSQL, or on the server of ``DATABASE_URL`` when it is set, and dropped
afterwards), with an embedded broker unless ``TENURE_BENCH_BOOTSTRAP_SERVERS``:

1. **consumer**: 20 active segments (:data:`.segmenter_data.CONSUMER_SEGMENTS`);
   ``replicas`` segmenter replicas (:mod:`.segmenter_replicas`: the service's own
   ``ConsumerRunner`` + ``EventBatchHandler`` with the outbox relay, the timer
   sweeper and the heap trimmer beside it, one process each) join the consumer
   group, ``events`` customer events are produced to ``customer.events``, then the
   replicas are let go on them together. Figure: events/s from then to the last
   committed batch. Baseline: asyncpg ``copy_records_to_table`` of one row per
   event into a scratch table.
2. **sweep**: ``sweep_profiles`` profiles made set-based in SQL, five
   time-dependent segments backfilled, then every timer made due one day later
   and ``MembershipSweep.sweep_once`` called until nothing is due. Figure: seconds.
   Baseline: COPY of the same profile rows into a copy of ``profiles``.
3. **memory**: the RSS of this process (where the first replica runs), sampled
   during a soak of ``soak_s`` seconds fed by a producer process at a steady rate.

The exit status follows :mod:`tenure.bench`: 0 when the scenarios ran (and, in a
full run, met their targets), 1 when a full run missed one, 2 when it could not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing as mp
import os
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.segmenter import repository as repo
from services.segmenter.backfill import backfill
from services.segmenter.catalog_cache import CatalogCache
from services.segmenter.rules.ast import dump_rule, parse_rule
from services.segmenter.settings import SegmenterGroup
from services.segmenter.sweeper import MembershipSweep
from shared.collector import tuned_for_throughput
from shared.db.engine import create_engine
from shared.events import ALL_TOPICS
from shared.events.customer_events import TOPIC as CUSTOMER_EVENTS
from shared.kafka.producer import EventPublisher, Message
from shared.kafka.topics import ensure_topics, with_dead_letters
from shared.settings import DatabaseSettings, KafkaSettings, OutboxSettings
from tenure.bench import cpu
from tenure.bench.report import Figure, format_figures
from tenure.bench.scratch import BenchServers, Log, asyncpg_dsn, log_to_stderr
from tenure.bench.segmenter_data import (
    CONSUMER_SEGMENTS,
    SWEEP_SEGMENTS,
    EventStream,
    profile_fill_sql,
)
from tenure.bench.segmenter_replicas import ReplicaConfig, ReplicaSet

TARGET_EVENTS_PER_S = 15_000.0
TARGET_SWEEP_S = 10.0
#: the service's sweep loops per replica: the sweep is judged as the service runs it
SWEEP_LOOPS = SegmenterGroup().sweep_workers
#: RSS growth per minute, fitted over the soak, below which memory counts as flat
TARGET_RSS_SLOPE_MB_PER_MIN = 1.0
#: the issue's "memory flat over 10 minutes"
FULL_SOAK_S = 600.0
#: the soak's load, as a share of the backlog rate just measured: memory is judged
#: under a load the consumer sustains while its tables grow
SOAK_SHARE_OF_RATE = 1 / 3
#: the share of the offered events the consumer must keep up with during the soak
SOAK_KEPT_UP = 0.97
PRODUCE_CHUNK = 20_000
RSS_SAMPLE_S = 0.5
#: give up when the consumer commits nothing for this long
STALL_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class SegmenterBenchOptions:
    events: int = 300_000
    customers: int = 50_000
    sweep_profiles: int = 1_000_000
    #: the sweep's chunk as the service is configured (``TENURE_SEGMENTER_SWEEP_CHUNK``)
    sweep_chunk: int = SegmenterGroup().sweep_chunk
    #: a second sweep with this chunk (None: skip it)
    large_sweep_chunk: int | None = 250_000
    #: a third sweep by this many sweepers at once, as the service's loops and replicas
    #: would (< 2: skip it); judged against the target when it is the service's default
    parallel_sweepers: int = SWEEP_LOOPS
    soak_s: float = 600.0
    #: events/s the soak producer offers; None: a third of the measured consumer rate,
    #: which the consumer sustains as the tables grow (at 60% it fell behind)
    soak_rate: float | None = None
    max_batch_records: int = SegmenterGroup().max_batch_records
    #: segmenter processes consuming in one group (this one and ``replicas - 1`` others):
    #: one per core, as many as partitions at most
    replicas: int = field(default_factory=lambda: max(1, min(os.cpu_count() or 1, 6)))
    partitions: int = 6
    #: a server to create the scratch databases on; None starts an embedded one
    database_url: str | None = None
    bootstrap_servers: str | None = None
    #: cProfile the consumer's window into this file
    profile_path: Path | None = None
    #: trace Python's allocations during the soak (``tracemalloc``): tells a leak of
    #: Python objects from an allocator that keeps freed memory
    trace_heap: bool = False
    #: the relay keeps what it published this long, as the service does (0: deletes it)
    replay_window_s: float = OutboxSettings().replay_window_s
    log: Log = log_to_stderr

    @classmethod
    def for_run(
        cls, *, duration_s: float, quick: bool, soak_s: float | None = None
    ) -> SegmenterBenchOptions:
        """Sizes for a full run (``duration_s`` stretches the consumer's backlog) or a
        ``quick`` smoke run; servers and overrides from the environment."""
        env = os.environ
        if quick:
            options = cls(
                events=20_000,
                customers=5_000,
                sweep_profiles=50_000,
                large_sweep_chunk=None,
                soak_s=5.0 if soak_s is None else soak_s,
            )
        else:
            options = cls(
                events=max(300_000, int(TARGET_EVENTS_PER_S * duration_s)),
                soak_s=FULL_SOAK_S if soak_s is None else soak_s,
            )
        overrides: dict[str, Any] = {
            "database_url": env.get("DATABASE_URL") or None,
            "bootstrap_servers": env.get("TENURE_BENCH_BOOTSTRAP_SERVERS") or None,
        }
        for name, kind in (
            ("events", int),
            ("customers", int),
            ("sweep_profiles", int),
            ("sweep_chunk", int),
            ("max_batch_records", int),
            ("replicas", int),
            ("soak_rate", float),
            ("replay_window_s", float),
        ):
            value = env.get(f"TENURE_BENCH_SEGMENTER_{name.upper()}")
            if value:
                overrides[name] = kind(value)
        if env.get("TENURE_BENCH_SEGMENTER_TRACE_HEAP"):
            overrides["trace_heap"] = env["TENURE_BENCH_SEGMENTER_TRACE_HEAP"] not in ("0", "")
        if env.get("TENURE_BENCH_SEGMENTER_PROFILE"):
            overrides["profile_path"] = Path(env["TENURE_BENCH_SEGMENTER_PROFILE"])
        return replace(options, **overrides)


# --- figures and the table -------------------------------------------------------------------


@dataclass(slots=True)
class BenchResult:
    options: SegmenterBenchOptions
    figures: list[Figure] = field(default_factory=list)
    #: CPU cores each process kept busy during the consumer's window
    consumer_cores: dict[str, float] | None = None
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    heap_samples: list[tuple[float, float]] = field(default_factory=list)

    def figure(self, scenario: str) -> Figure:
        return next(f for f in self.figures if f.scenario == scenario)

    @property
    def misses(self) -> list[Figure]:
        return [f for f in self.figures if f.passed is False]


# --- the run -----------------------------------------------------------------------------------


async def run_segmenter_bench(
    *,
    duration_s: float,
    quick: bool,
    soak_s: float | None = None,
    json_path: Path | None = None,
    options: SegmenterBenchOptions | None = None,
) -> int:
    """Run the three scenarios, print the table; the exit status of ``tenure bench``."""
    options = options or SegmenterBenchOptions.for_run(
        duration_s=duration_s, quick=quick, soak_s=soak_s
    )
    started = datetime.now(UTC)
    try:
        result = await SegmenterBench(options).run()
    except (RuntimeError, TimeoutError, ValueError, OSError, asyncpg.PostgresError) as exc:
        print(f"tenure bench segmenter: {exc!r}", file=sys.stderr)
        return 2
    print(
        f"tenure bench segmenter: {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"{options.events:,} events for {options.customers:,} customers, "
        f"{options.sweep_profiles:,}-profile sweep, {options.soak_s:g}s soak"
        f"{' (quick)' if quick else ''}"
    )
    print(format_figures(result.figures))
    if result.consumer_cores:
        shares = ", ".join(f"{name} {cores:.2f}" for name, cores in result.consumer_cores.items())
        print(f"cores busy during the consumer window: {shares}")
    for miss in result.misses:
        print(f"MISS {miss.scenario}: {miss.value:,.2f} {miss.unit}, target {miss.target}")
    path = json_path or (
        Path(os.environ["TENURE_BENCH_JSON"]) if os.environ.get("TENURE_BENCH_JSON") else None
    )
    if path is not None:
        path.write_bytes(_as_json(result, started, quick))
    return 1 if result.misses and not quick else 0


def segmenter_bench(*, duration_s: float, quick: bool, soak_s: float | None = None) -> int:
    """:func:`run_segmenter_bench` for callers outside an event loop (the CLI)."""
    return asyncio.run(run_segmenter_bench(duration_s=duration_s, quick=quick, soak_s=soak_s))


def _as_json(result: BenchResult, started: datetime, quick: bool) -> bytes:
    options = {k: v for k, v in asdict(result.options).items() if k != "log"}
    options["database_url"] = "(set)" if options["database_url"] else None
    return orjson.dumps(
        {
            "target": "segmenter",
            "started": started.isoformat(),
            "cpus": os.cpu_count(),
            "quick": quick,
            "options": options,
            "figures": [{**asdict(f), "verdict": f.verdict or None} for f in result.figures],
            "consumer_cores": result.consumer_cores,
            #: (seconds since the soak started, RSS MB), to see the shape behind the slope
            "rss_samples": result.rss_samples,
            #: (seconds, MB Python allocated since the soak started and still holds)
            "heap_samples": result.heap_samples,
        },
        option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY,
        default=str,
    )


class SegmenterBench:
    """Starts the servers, runs the scenarios in order, always cleans up."""

    def __init__(self, options: SegmenterBenchOptions) -> None:
        self.options = options
        self.log = options.log
        self.result = BenchResult(options)
        self._state = Path(tempfile.mkdtemp(prefix="tenure-bench-segmenter-"))
        self._servers = BenchServers(
            self._state,
            database_url=options.database_url,
            bootstrap_servers=options.bootstrap_servers,
            log=options.log,
        )
        self._replica_pids: list[int] = []

    async def run(self) -> BenchResult:
        try:
            await self._servers.start()
            await self._consumer_scenario()
            gc.collect()
            await self._sweep_scenario()
            return self.result
        finally:
            await self._servers.stop()

    # --- servers and databases -------------------------------------------------------------

    @property
    def _bootstrap(self) -> str:
        return self._servers.bootstrap

    async def _new_database(self, purpose: str) -> str:
        """A migrated scratch database on the server; its SQLAlchemy-style URL."""
        return await self._servers.new_database("segmenter", purpose)

    def _postgres_pid(self) -> int | None:
        pid_file = self._state / "postgres" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError):
            return int(pid_file.read_text().split("\n", 1)[0])
        return None

    # --- 1. the consumer (and the memory soak) ---------------------------------------------------

    async def _consumer_scenario(self) -> None:
        """Replicas join the group first, then the events are produced, then the replicas
        are let go on the backlog."""
        options = self.options
        url = await self._new_database("consumer")
        kafka = KafkaSettings(bootstrap_servers=self._bootstrap, partitions=options.partitions)
        await ensure_topics(kafka, with_dead_letters(ALL_TOPICS))
        group_id = f"bench-segmenter-{uuid.uuid4().hex[:8]}"
        if options.bootstrap_servers:
            await _start_group_at_end(self._bootstrap, group_id)
        engine = create_engine(DatabaseSettings(url=url))
        try:
            await save_segments(engine, CONSUMER_SEGMENTS)
        finally:
            await engine.dispose()
        config = ReplicaConfig(
            bootstrap_servers=self._bootstrap,
            partitions=options.partitions,
            database_url=url,
            group_id=group_id,
            max_batch_records=options.max_batch_records,
            replay_window_s=options.replay_window_s,
        )
        meter = BatchMeter(profile_path=options.profile_path)
        replicas = ReplicaSet(config, options.replicas, meter.record)
        try:
            self.log(f"starting {options.replicas} segmenter replica(s) …")
            await replicas.start()
            await replicas.wait_until_assigned(options.partitions, timeout_s=STALL_TIMEOUT_S)
            self._replica_pids = replicas.pids
            stream = EventStream(customers=options.customers, now=datetime.now(UTC))
            copy_rows = await self._produce(kafka, stream, options.events)
            rows_per_s = await _copy_events(url, copy_rows)
            del copy_rows
            gc.collect()
            self.result.figures.append(
                Figure(
                    "COPY events (baseline)",
                    rows_per_s,
                    "rows/s",
                    note="asyncpg "
                    "copy_records_to_table, one row per event, into an unindexed table",
                )
            )
            with tuned_for_throughput():  # in this process's replica, as in the others
                await self._consume(replicas, meter, rows_per_s)
        finally:
            await replicas.stop()

    async def _produce(
        self, kafka: KafkaSettings, stream: EventStream, count: int
    ) -> list[tuple[str, str, datetime, str]]:
        self.log(f"producing {count:,} events to {CUSTOMER_EVENTS} …")
        publisher = EventPublisher(kafka, client_id="bench-segmenter-producer")
        await publisher.start()
        rows: list[tuple[str, str, datetime, str]] = []
        started = time.perf_counter()
        try:
            for offset in range(0, count, PRODUCE_CHUNK):
                events = stream.take(min(PRODUCE_CHUNK, count - offset))
                await publisher.publish_many(
                    Message(CUSTOMER_EVENTS, e.key, e.value) for e in events
                )
                rows.extend(e.copy_row for e in events)
        finally:
            await publisher.stop()
        self.log(f"produced in {time.perf_counter() - started:.1f}s")
        return rows

    async def _consume(self, replicas: ReplicaSet, meter: BatchMeter, copy_rate: float) -> None:
        options = self.options
        rss = RssSampler()
        sampling = asyncio.create_task(rss.run(), name="bench-rss")

        def check() -> None:
            replicas.raise_if_stopped()
            _raise_if_done([sampling])

        try:
            segments = len(CONSUMER_SEGMENTS)
            self.log(
                f"consuming {options.events:,} events with {segments} segments, "
                f"{options.replicas} replica(s) …"
            )
            meter.begin(self._cpu_groups)
            replicas.go()
            await meter.wait_for(options.events, check)
            rate = meter.events_per_s
            self.result.consumer_cores = meter.cores
            self.result.figures.append(
                Figure(
                    "consumer (20 segments)",
                    rate,
                    "events/s",
                    baseline=f"COPY {copy_rate:,.0f} rows/s",
                    ratio=rate / copy_rate,
                    target=f">= {TARGET_EVENTS_PER_S:,.0f}/s",
                    passed=rate >= TARGET_EVENTS_PER_S,
                    note=f"{options.replicas} replica process(es), {meter.batches} batches "
                    f"of up to {options.max_batch_records}, {meter.seconds:.1f}s from the "
                    "start to the last committed batch",
                )
            )
            window = rss.samples[:]
            if options.soak_s > 0:
                window = await self._soak(meter, rss, check, rate)
            self._memory_figures(window)
            self._heap_figures(rss.heap_samples)
        finally:
            rss.stop()

    async def _soak(
        self,
        meter: BatchMeter,
        rss: RssSampler,
        check: Callable[[], None],
        measured_rate: float,
    ) -> list[tuple[float, float]]:
        options = self.options
        rate = options.soak_rate or max(500.0, measured_rate * SOAK_SHARE_OF_RATE)
        self.log(f"soak: {options.soak_s:g}s at {rate:,.0f} events/s from a producer process …")
        gc.collect()
        start_events, start_at = meter.events, time.monotonic()
        first_sample = len(rss.samples)
        process = mp.get_context("spawn").Process(
            target=soak_producer,
            args=(self._bootstrap, options.customers, rate, options.soak_s),
            name="bench-soak-producer",
            daemon=True,
        )
        if options.trace_heap:
            tracemalloc.start()
        early: tracemalloc.Snapshot | None = None
        process.start()
        try:
            while process.is_alive():
                check()
                await asyncio.sleep(0.5)
                if options.trace_heap and early is None and time.monotonic() - start_at > 60:
                    early = tracemalloc.take_snapshot()
            if early is not None:
                self._log_heap_growth(early, tracemalloc.take_snapshot())
        finally:
            tracemalloc.stop()
            if process.is_alive():
                process.terminate()
            process.join(10)
        window = rss.samples[first_sample:]
        consumed = meter.events - start_events
        soak_rate = consumed / max(time.monotonic() - start_at, 1e-9)
        self.result.figures.append(
            Figure(
                "soak consumed",
                soak_rate,
                "events/s",
                baseline=f"offered {rate:,.0f}/s",
                ratio=soak_rate / rate,
                target=f">= {SOAK_KEPT_UP:.0%} of offered",
                passed=soak_rate >= SOAK_KEPT_UP * rate,
                note=f"{consumed:,} events; below the target the consumer fell behind, and "
                "the RSS figures include a backlog's batches",
            )
        )
        return window

    def _log_heap_growth(self, early: tracemalloc.Snapshot, late: tracemalloc.Snapshot) -> None:
        """The source lines whose live allocations grew most from a minute into the soak
        to its end."""
        self.log("Python heap growth since the soak's first minute, by source line:")
        for stat in late.compare_to(early, "lineno")[:10]:
            self.log(
                f"  {stat.size_diff / 2**10:+10,.0f} KiB {stat.count_diff:+9,d} blocks  "
                f"{stat.traceback}"
            )

    def _heap_figures(self, samples: list[tuple[float, float]]) -> None:
        """What Python allocated during the soak and still held: a leak of Python
        objects grows here, while an allocator keeping freed memory does not."""
        self.result.heap_samples = samples
        if len(samples) < 2:
            return
        span = samples[-1][0] - samples[0][0]
        second_half = [x for x in samples if x[0] - samples[0][0] >= span / 2]
        self.result.figures += [
            Figure("Python heap at soak end (tracemalloc)", samples[-1][1], "MB"),
            Figure("Python heap slope, whole soak", _slope_per_minute(samples), "MB/min"),
            Figure(
                "Python heap slope, 2nd half",
                _slope_per_minute(second_half) if len(second_half) >= 2 else 0.0,
                "MB/min",
                note="tracemalloc from the soak's start: it slows the consumer and adds "
                "to the RSS above",
            ),
        ]

    def _memory_figures(self, samples: list[tuple[float, float]]) -> None:
        self.result.rss_samples = samples
        if len(samples) < 2:
            raise RuntimeError("too few RSS samples: the consumer window was too short")
        values = [mb for _, mb in samples]
        slope = _slope_per_minute(samples)
        span = samples[-1][0] - samples[0][0]
        # A leak grows for the whole soak; the allocator settling after a step up (a larger
        # batch than before, say) does not. The target is judged on the second half.
        second_half = [x for x in samples if x[0] - samples[0][0] >= span / 2]
        settled = _slope_per_minute(second_half) if len(second_half) >= 2 else slope
        self.result.figures += [
            Figure("RSS at soak start", values[0], "MB"),
            Figure("RSS at soak end", values[-1], "MB"),
            Figure("RSS max", max(values), "MB"),
            Figure(
                "RSS slope, whole soak",
                slope,
                "MB/min",
                note=f"least-squares fit over {len(samples)} samples in {span:.0f}s",
            ),
            Figure(
                "RSS slope, 2nd half",
                settled,
                "MB/min",
                target=f"< {TARGET_RSS_SLOPE_MB_PER_MIN:g} MB/min",
                passed=settled < TARGET_RSS_SLOPE_MB_PER_MIN,
                note=f"least-squares fit over the last {span / 2:.0f}s, {len(second_half)} samples",
            ),
        ]

    @property
    def _cpu_groups(self) -> dict[str, list[int]]:
        """The processes whose CPU time the consumer's window reports, by name (PostgreSQL
        and the broker with their children)."""
        broker = self._servers.broker
        broker_pid = broker.process.pid if broker and broker.process else None
        postgres = self._postgres_pid()
        return {
            "segmenter replicas": self._replica_pids or [os.getpid()],
            "postgres": [postgres] if postgres else [],
            "broker": [broker_pid] if broker_pid else [],
        }

    # --- 2. the sweep --------------------------------------------------------------------------

    async def _sweep_scenario(self) -> None:
        options = self.options
        url = await self._new_database("sweep")
        engine = create_engine(DatabaseSettings(url=url))
        try:
            await save_segments(engine, SWEEP_SEGMENTS)  # backfilled below, timed
            now = datetime.now(UTC).replace(microsecond=0)
            self.log(f"making {options.sweep_profiles:,} profiles …")
            started = time.perf_counter()
            async with engine.begin() as conn:
                for statement in profile_fill_sql(profiles=options.sweep_profiles):
                    await conn.execute(text(statement), {"now": now})
            self.log(f"made in {time.perf_counter() - started:.1f}s")
            copy_s = await _copy_profiles(url)
            n = options.sweep_profiles
            self.result.figures.append(
                Figure(
                    f"COPY {n:,} profiles (baseline)",
                    copy_s,
                    "s",
                    note="asyncpg "
                    "copy_records_to_table of the same profile rows into a copy of "
                    "profiles (with its primary key)",
                )
            )
            catalogs = CatalogCache(engine)
            catalog = await catalogs.current()
            self.log("backfilling the sweep segments …")
            started = time.perf_counter()
            await backfill(engine, catalog, catalog.segments, now=now)
            backfill_s = time.perf_counter() - started
            self.result.figures.append(
                Figure(
                    f"backfill {len(catalog.segments)} segments",
                    backfill_s,
                    "s",
                    baseline=f"COPY {copy_s:.2f} s",
                    ratio=backfill_s / copy_s,
                    note=f"set-based over {n:,} profiles (setup of the sweep; no target)",
                )
            )
            later = now + timedelta(days=1)
            await _make_every_timer_due(url, due=later - timedelta(seconds=1))
            runs = [(options.sweep_chunk, 1)]
            if options.large_sweep_chunk and options.large_sweep_chunk != options.sweep_chunk:
                runs.append((options.large_sweep_chunk, 1))
            if options.parallel_sweepers > 1:
                runs.append((options.sweep_chunk, options.parallel_sweepers))
            for index, (chunk, sweepers) in enumerate(runs):
                if index:
                    await _restore_sweep_state(url)
                seconds, swept, rounds = await self._sweep(engine, catalogs, chunk, later, sweepers)
                changes = await _outbox_rows(url)
                label = f"sweep {swept:,} (chunk {chunk:,}" + (
                    f", {sweepers} sweepers)" if sweepers > 1 else ")"
                )
                # Judged as the service sweeps: SWEEP_LOOPS loops per replica. The
                # other runs show the cost per loop and per chunk size.
                judged = sweepers == SWEEP_LOOPS
                self.result.figures.append(
                    Figure(
                        label,
                        seconds,
                        "s",
                        baseline=f"COPY {copy_s:.2f} s",
                        ratio=seconds / copy_s,
                        target=f"< {TARGET_SWEEP_S:g} s for 1M" if judged else "",
                        passed=seconds * 1_000_000 / max(swept, 1) < TARGET_SWEEP_S
                        if judged
                        else None,
                        note=f"{rounds} sweep_once calls, {swept / seconds:,.0f} profiles/s, "
                        f"{changes:,} membership changes"
                        + ("" if n == 1_000_000 else "; target scaled to 1M profiles"),
                    )
                )
        finally:
            await engine.dispose()

    async def _sweep(
        self,
        engine: AsyncEngine,
        catalogs: CatalogCache,
        chunk: int,
        now: datetime,
        sweepers: int,
    ) -> tuple[float, int, int]:
        """Call ``sweep_once`` until nothing is due, from ``sweepers`` tasks at once (each
        on a connection of its own, as replicas would); seconds, swept and calls."""
        self.log(f"sweeping with chunk {chunk:,}, {sweepers} sweeper(s) …")
        swept = rounds = 0

        async def sweep_until_done() -> None:
            nonlocal swept, rounds
            sweeper = MembershipSweep(
                engine=engine, catalogs=catalogs, clock=lambda: now, chunk=chunk
            )
            while True:
                claimed = await sweeper.sweep_once()
                rounds += 1
                if not claimed:
                    return
                swept += claimed

        started = time.perf_counter()
        await asyncio.gather(*(sweep_until_done() for _ in range(sweepers)))
        return time.perf_counter() - started, swept, rounds


# --- the consumer's meter and the RSS sampler -------------------------------------------------


class BatchMeter:
    """Counts the batches every replica committed, and when (a handler returns once its
    batch is durable), from :meth:`begin` on; reads CPU time at both ends."""

    def __init__(self, *, profile_path: Path | None = None) -> None:
        self._cpu_groups: dict[str, list[int]] = {}
        self._profile_path = profile_path
        self._profiler: Any = None
        self.events = 0
        self.batches = 0
        self.started_at: float | None = None
        self.last_at = 0.0
        self._first_cpu: cpu.CpuSample | None = None
        self.cores: dict[str, float] | None = None
        self._changed = asyncio.Event()

    def begin(self, cpu_groups: dict[str, list[int]]) -> None:
        """The window starts now (the replicas are let go on a backlog)."""
        self._cpu_groups = cpu_groups
        self.started_at = self.last_at = time.perf_counter()
        self._first_cpu = _cpu_sample(cpu_groups)
        if self._profile_path is not None:
            import cProfile

            self._profiler = cProfile.Profile()
            self._profiler.enable()

    def record(self, replica: int, at: float, records: int) -> None:
        """Replica ``replica`` committed a batch of ``records`` at ``at`` (perf_counter)."""
        self.events += records
        self.batches += 1
        self.last_at = max(self.last_at, at)
        self._changed.set()

    async def wait_for(self, events: int, check: Callable[[], None]) -> None:
        """Until ``events`` were committed; raise when ``check`` does (a replica stopped)
        or nothing was committed for :data:`STALL_TIMEOUT_S`."""
        seen, progress_at = self.events, time.monotonic()
        while self.events < events:
            check()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=1.0)
            if self.events != seen:
                seen, progress_at = self.events, time.monotonic()
            elif time.monotonic() - progress_at > STALL_TIMEOUT_S:
                raise TimeoutError(
                    f"the consumer committed nothing for {STALL_TIMEOUT_S:g}s "
                    f"({self.events:,} of {events:,} events)"
                )
        self.cores = cpu.cores_used(self._first_cpu, _cpu_sample(self._cpu_groups))
        if self._profiler is not None and self._profile_path is not None:
            self._profiler.disable()
            self._profiler.dump_stats(self._profile_path)
            self._profiler = None

    @property
    def seconds(self) -> float:
        return 0.0 if self.started_at is None else self.last_at - self.started_at

    @property
    def events_per_s(self) -> float:
        """Events committed in the window, over its length."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


class RssSampler:
    """This process's resident set size every :data:`RSS_SAMPLE_S` seconds, in MB; and,
    while ``tracemalloc`` traces, the memory Python allocated since and still holds."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.heap_samples: list[tuple[float, float]] = []
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic()
            rss = cpu.resident_mb()
            if rss is not None:
                self.samples.append((now, rss))
            if tracemalloc.is_tracing():
                self.heap_samples.append((now, tracemalloc.get_traced_memory()[0] / 2**20))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=RSS_SAMPLE_S)


def _cpu_sample(groups: dict[str, list[int]]) -> cpu.CpuSample | None:
    """CPU seconds of each group of processes with their children, but for this process
    itself, whose children are the embedded servers; and of the whole machine."""
    return cpu.sample(time.perf_counter(), groups, alone=(os.getpid(),))


def _slope_per_minute(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of MB over time, per minute."""
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in samples)
    return cov / var * 60.0


def _raise_if_done(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        if task.done():
            exc = None if task.cancelled() else task.exception()
            raise RuntimeError(f"{task.get_name()} stopped early: {exc!r}")


def soak_producer(bootstrap_servers: str, customers: int, rate: float, seconds: float) -> None:
    """Entry point of the soak's producer process: ``rate`` events/s for ``seconds``."""
    asyncio.run(_produce_steadily(bootstrap_servers, customers, rate, seconds))


async def _produce_steadily(
    bootstrap_servers: str, customers: int, rate: float, seconds: float
) -> None:
    kafka = KafkaSettings(bootstrap_servers=bootstrap_servers)
    publisher = EventPublisher(kafka, client_id="bench-soak-producer")
    await publisher.start()
    stream = EventStream(customers=customers, now=datetime.now(UTC), seed=int(time.time()))
    tick = 0.1
    started = time.monotonic()
    sent = 0
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(rate * elapsed) + int(rate * tick)
            if due > sent:
                events = stream.take(due - sent)
                await publisher.publish_many(
                    Message(CUSTOMER_EVENTS, e.key, e.value) for e in events
                )
                sent = due
            await asyncio.sleep(max(0.0, tick - (time.monotonic() - started - elapsed)))
    finally:
        await publisher.stop()


# --- helpers on the databases -----------------------------------------------------------------


async def save_segments(
    engine: AsyncEngine, definitions: dict[str, dict[str, Any]], *, backfilled: bool = False
) -> None:
    """Save version 1 of each segment (validated), marked backfilled when ``backfilled``
    (its members are made otherwise, or there are no profiles yet)."""
    async with engine.begin() as conn:
        for segment_id, definition in definitions.items():
            await repo.save_segment_version(
                conn,
                segment_id=segment_id,
                name=segment_id,
                description="tenure bench segmenter",
                definition=dump_rule(parse_rule(definition)),
                version=1,
            )
        if backfilled:
            await conn.execute(text("UPDATE segmenter.segments SET backfilled_version = version"))


async def _start_group_at_end(bootstrap_servers: str, group_id: str) -> None:
    """On a broker of someone else's, start the group after what ``customer.events`` holds."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(CUSTOMER_EVENTS) or set()
        tps = [TopicPartition(CUSTOMER_EVENTS, p) for p in partitions]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit(dict(ends.items()))
    finally:
        await consumer.stop()


async def _copy_events(url: str, rows: list[tuple[str, str, datetime, str]]) -> float:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(
            "CREATE TABLE public.bench_copy_events "
            "(customer_id text, event_name text, at timestamptz, properties jsonb)"
        )
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "bench_copy_events",
            schema_name="public",
            records=rows,
            columns=["customer_id", "event_name", "at", "properties"],
        )
        seconds = time.perf_counter() - started
        await conn.execute("DROP TABLE public.bench_copy_events")
    finally:
        await conn.close()
    return len(rows) / seconds


async def _copy_profiles(url: str) -> float:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        records = await conn.fetch("SELECT * FROM segmenter.profiles")
        columns = list(records[0].keys()) if records else []
        await conn.execute(
            "CREATE TABLE public.bench_copy_profiles (LIKE segmenter.profiles INCLUDING ALL)"
        )
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "bench_copy_profiles", schema_name="public", records=records, columns=columns
        )
        seconds = time.perf_counter() - started
        await conn.execute("DROP TABLE public.bench_copy_profiles")
        del records
    finally:
        await conn.close()
    return seconds


async def _make_every_timer_due(url: str, *, due: datetime) -> None:
    """Every profile gets a due timer; the memberships and timers are kept to restore them."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(
            "INSERT INTO segmenter.membership_timers (customer_id, due_at) "
            "SELECT customer_id, $1 FROM segmenter.profiles "
            "ON CONFLICT (customer_id) DO UPDATE SET due_at = excluded.due_at",
            due,
        )
        await conn.execute("TRUNCATE segmenter.outbox")  # the backfill's; a relay drains them
        await conn.execute(
            "CREATE TABLE public.bench_saved_memberships AS SELECT * FROM segmenter.memberships"
        )
        await conn.execute(
            "CREATE TABLE public.bench_saved_timers AS SELECT * FROM segmenter.membership_timers"
        )
        await _vacuum(conn)
    finally:
        await conn.close()


async def _restore_sweep_state(url: str) -> None:
    """The memberships and due timers as they were before the previous sweep."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        async with conn.transaction():
            await conn.execute("TRUNCATE segmenter.memberships, segmenter.membership_timers")
            await conn.execute("TRUNCATE segmenter.outbox")
            await conn.execute(
                "INSERT INTO segmenter.memberships SELECT * FROM public.bench_saved_memberships"
            )
            await conn.execute(
                "INSERT INTO segmenter.membership_timers SELECT * FROM public.bench_saved_timers"
            )
        await _vacuum(conn)
    finally:
        await conn.close()


async def _outbox_rows(url: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM segmenter.outbox"))
    finally:
        await conn.close()


async def _vacuum(conn: asyncpg.Connection) -> None:
    """What autovacuum would have done by the time of a real sweep."""
    for table in ("memberships", "membership_timers", "outbox", "profiles"):
        await conn.execute(f"VACUUM ANALYZE segmenter.{table}")
