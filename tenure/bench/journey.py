"""``tenure bench journey``: the journey service's consumer, timer sweep and latency,
each beside a baseline measured in the same run on the same servers.

Each scenario has a database of its own on the embedded PostgreSQL (or the server of
``DATABASE_URL``), and the embedded broker (or ``TENURE_BENCH_BOOTSTRAP_SERVERS``):

1. **consumer**: 10 active journeys (an event trigger each, an ``Order Completed``
   goal); a backlog of ``events`` customer events of which 1 % trigger a journey, 4 %
   are goal events and the rest are read by no journey; the service's
   ``ConsumerRunner`` + ``JourneyBatchHandler`` in this process. Figure: events/s.
   Baseline: the same records read and decoded (``CustomerEvent.from_bytes``) by a
   bare aiokafka consumer, nothing else.
2. **timers**: ``timers`` runs waiting, every timer due; the service's sweep
   (``sweep_workers`` loops, ``sweep_chunk`` per round) fires them: each a machine
   transition, a dispatch request and run events through the outbox. Figure:
   timers/s. Baseline: the same number of rows claimed and deleted in the same
   chunks from a bare timer table (:func:`shared.db.timers.claim_due`), nothing else.
3. **latency**: the whole service as ``tenure serve journey`` in a process of its own
   (consumer, sweep, outbox relay, publisher) and a journey that sends at once;
   trigger events produced at ``rate``/s for ``latency_s``. Figure: p99 from the
   trigger's production to its request read from ``dispatch.requests``. Baseline:
   p99 of the same events read back from ``customer.events`` (the broker's own
   round trip).

Exit status as :mod:`tenure.bench`: 0 ran (and met the targets in a full run), 1 a
full run missed one, 2 could not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from sqlalchemy import MetaData, insert, text

from services.journey.catalog import CatalogCache
from services.journey.consumer import DECODERS, JourneyBatchHandler
from services.journey.repository import journeys, versions
from services.journey.settings import JourneyGroup
from services.journey.timers import timer_round
from shared.collector import tuned_for_throughput
from shared.db.engine import create_engine
from shared.db.timers import claim_due, timer_table
from shared.events import ALL_TOPICS, dispatch_requests
from shared.events.customer_events import TOPIC as CUSTOMER_EVENTS
from shared.events.customer_events import CustomerEvent, EventType
from shared.kafka.consumer import ConsumerRunner, Record
from shared.kafka.dlq import DeadLetterPolicy
from shared.kafka.producer import EventPublisher, Message
from shared.kafka.topics import ensure_topics, with_dead_letters
from shared.settings import DatabaseSettings, KafkaSettings
from tenure.bench.report import Figure, percentile_ms
from tenure.bench.scratch import BenchServers, Log, asyncpg_dsn, log_to_stderr
from tenure.bench.topic_reader import TopicReader
from tenure.embedded import (
    free_port,
)

TARGET_EVENTS_PER_S = 5_000.0
TARGET_TIMERS_PER_S = 5_000.0
TARGET_P99_MS = 200.0
JOURNEYS = 10
PRODUCE_CHUNK = 10_000
STALL_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class JourneyBenchOptions:
    events: int = 200_000
    customers: int = 50_000
    timers: int = 100_000
    rate: float = 1_000.0
    latency_s: float = 30.0
    partitions: int = 6
    sweep_chunk: int = JourneyGroup().sweep_chunk
    sweep_workers: int = JourneyGroup().sweep_workers
    max_batch_records: int = JourneyGroup().max_batch_records
    database_url: str | None = None
    bootstrap_servers: str | None = None
    log: Log = log_to_stderr

    @classmethod
    def for_run(cls, *, duration_s: float, quick: bool) -> JourneyBenchOptions:
        env = os.environ
        base = (
            cls(events=20_000, customers=5_000, timers=10_000, latency_s=5.0)
            if quick
            else cls(events=max(200_000, int(TARGET_EVENTS_PER_S * duration_s)))
        )
        return JourneyBenchOptions(
            **{
                **{k: getattr(base, k) for k in base.__dataclass_fields__},
                "database_url": env.get("DATABASE_URL") or None,
                "bootstrap_servers": env.get("TENURE_BENCH_BOOTSTRAP_SERVERS") or None,
            }
        )


@dataclass
class JourneyBench:
    options: JourneyBenchOptions
    figures: list[Figure] = field(default_factory=list)
    _state: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tenure-bench-j-")))
    _servers: BenchServers = field(init=False)

    def __post_init__(self) -> None:
        self._servers = BenchServers(
            self._state,
            database_url=self.options.database_url,
            bootstrap_servers=self.options.bootstrap_servers,
            log=self.options.log,
        )

    @property
    def _bootstrap(self) -> str:
        return self._servers.bootstrap

    async def run(self) -> list[Figure]:
        try:
            await self._start_servers()
            await self._consumer_scenario()
            await self._timer_scenario()
            await self._latency_scenario()
            return self.figures
        finally:
            await self._servers.stop()

    # --- servers -------------------------------------------------------------------------

    async def _start_servers(self) -> None:
        await self._servers.start()
        await ensure_topics(self._kafka(), with_dead_letters(ALL_TOPICS))

    def _kafka(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self._bootstrap, partitions=self.options.partitions)

    async def _new_database(self, purpose: str) -> str:
        return await self._servers.new_database("journey", purpose)

    # --- 1. the consumer ---------------------------------------------------------------------

    async def _consumer_scenario(self) -> None:
        options = self.options
        url = await self._new_database("consumer")
        await _publish_journeys(url, _consumer_journeys())
        # a topic of this scenario's own, so that the baseline reads exactly these records
        topic = f"bench.journey.events.{uuid.uuid4().hex[:6]}"
        kafka = self._kafka()
        await ensure_topics(kafka, [topic])
        options.log(f"producing {options.events:,} events …")
        await _produce(kafka, topic, _event_mix(options.events, options.customers))

        options.log("baseline: reading and decoding them with a bare consumer …")
        baseline = await _decode_rate(self._bootstrap, topic, options.events)

        options.log("the journey consumer on the backlog …")
        engine = create_engine(DatabaseSettings(url=url))
        handled = 0
        first: float | None = None
        last = 0.0
        done = asyncio.Event()
        handler = JourneyBatchHandler(engine=engine, catalogs=CatalogCache(engine))

        async def counted(records: Sequence[Record[Any]]) -> None:
            nonlocal handled, first, last
            if first is None:
                first = time.perf_counter()
            await handler(records)
            handled += len(records)
            last = time.perf_counter()
            if handled >= options.events:
                done.set()

        publisher = EventPublisher(kafka, client_id="bench-journey-dlq")
        await publisher.start()
        runner = ConsumerRunner(
            settings=kafka,
            group_id=f"bench-journey-{uuid.uuid4().hex[:8]}",
            decoders={topic: DECODERS[CUSTOMER_EVENTS]},
            handler=counted,
            dead_letters=DeadLetterPolicy(publisher),
            max_records=options.max_batch_records,
        )
        task = asyncio.create_task(runner.run())
        try:
            with tuned_for_throughput():  # as the service runs (its lifespan)
                await asyncio.wait_for(done.wait(), STALL_TIMEOUT_S + options.events / 1_000)
        finally:
            runner.signal_shutdown()
            await task
            await publisher.stop()
            async with engine.connect() as conn:
                entered = await conn.scalar(text("SELECT count(*) FROM journey.runs"))
            await engine.dispose()
        assert first is not None
        rate = handled / max(last - first, 1e-9)
        options.log(f"  {rate:,.0f} events/s, {entered:,} runs entered")
        self.figures.append(
            Figure(
                f"consumer, {JOURNEYS} active journeys",
                rate,
                "events/s",
                f"bare read + decode {baseline:,.0f}/s",
                rate / baseline,
                f">= {TARGET_EVENTS_PER_S:,.0f}",
                rate >= TARGET_EVENTS_PER_S,
            )
        )

    # --- 2. timers ---------------------------------------------------------------------------

    async def _timer_scenario(self) -> None:
        options = self.options
        url = await self._new_database("timers")
        await _publish_journeys(url, {"timers": _wait_then_send("Bench Timer Trigger")})
        now = datetime.now(UTC)
        options.log(f"seeding {options.timers:,} waiting runs …")
        await _seed_waiting_runs(url, options.timers, due=now - timedelta(seconds=1))

        options.log("baseline: claiming as many bare timer rows in the same chunks …")
        baseline = await _bare_claims(url, options.timers, options.sweep_chunk, now)

        options.log(f"the sweep ({options.sweep_workers} loops) on the backlog …")
        engine = create_engine(DatabaseSettings(url=url))
        catalogs = CatalogCache(engine)
        sweep_once = timer_round(
            engine=engine, catalogs=catalogs, clock=lambda: now, chunk=options.sweep_chunk
        )
        fired = 0

        async def loop() -> None:
            nonlocal fired
            while True:
                claimed = await sweep_once()
                fired += claimed
                if claimed == 0:
                    return

        started = time.perf_counter()
        with tuned_for_throughput():  # as the service runs (its lifespan)
            await asyncio.gather(*(loop() for _ in range(options.sweep_workers)))
        elapsed = time.perf_counter() - started
        async with engine.connect() as conn:
            sent = await conn.scalar(
                text("SELECT reached FROM journey.step_counts WHERE step_id = 'mail'")
            )
        await engine.dispose()
        if sent != options.timers:
            raise RuntimeError(f"{options.timers:,} timers were due, {sent} sends were made")
        rate = fired / elapsed
        options.log(f"  {rate:,.0f} timers/s")
        self.figures.append(
            Figure(
                f"timers, backlog of {options.timers:,}",
                rate,
                "timers/s",
                f"bare claim + delete {baseline:,.0f}/s",
                rate / baseline,
                f">= {TARGET_TIMERS_PER_S:,.0f}",
                rate >= TARGET_TIMERS_PER_S,
            )
        )

    # --- 3. latency --------------------------------------------------------------------------

    async def _latency_scenario(self) -> None:
        options = self.options
        url = await self._new_database("latency")
        trigger = "Bench Latency Probe"
        await _publish_journeys(
            url,
            {
                "latency": {
                    "triggers": [{"kind": "event", "event": trigger}],
                    "steps": [
                        {
                            "id": "mail",
                            "type": "send",
                            "channels": ["email"],
                            "template_id": "t",
                            "next": "x",
                        },
                        {"id": "x", "type": "exit"},
                    ],
                }
            },
        )
        kafka = self._kafka()
        requests = _Tail(self._bootstrap, dispatch_requests.TOPIC)
        echoes = _Tail(self._bootstrap, CUSTOMER_EVENTS)
        await requests.start()
        await echoes.start()
        # the service in a process of its own, as `tenure serve journey` runs it: the load
        # generator and the tails here must not share its core
        port = free_port()
        env = {
            **os.environ,
            "TENURE_KAFKA_BOOTSTRAP_SERVERS": self._bootstrap,
            "TENURE_KAFKA_PARTITIONS": str(self.options.partitions),
            "TENURE_DATABASE_URL": url,
            "TENURE_HTTP_HOST": "127.0.0.1",
            "TENURE_HTTP_PORT": str(port),
            "TENURE_JOURNEY_CONSUMER_GROUP": f"bench-latency-{uuid.uuid4().hex[:8]}",
            "TENURE_LOG_FORMAT": "text",
            "TENURE_LOG_LEVEL": "WARNING",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        process = _serve_journey(env, self._state / "journey.log")
        try:
            await _ready(f"http://127.0.0.1:{port}/readyz", process)
            options.log("latency: waiting for the service's consumer to join its group …")
            await _produce_at_rate(kafka, trigger, 1.0, 0.5, stamp="warmup")
            await requests.wait(lambda v: "warmup" in v.get("context", {}), 1)
            options.log(f"latency: {options.rate:,.0f} triggers/s for {options.latency_s:g}s …")
            count = await _produce_at_rate(kafka, trigger, options.rate, options.latency_s)
            await requests.wait(lambda v: v.get("context", {}).get("probe") is not None, count)
            await echoes.wait(lambda v: v.get("properties", {}).get("probe") is not None, count)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            await requests.stop()
            await echoes.stop()
        through = [
            arrived - value["context"]["probe"]
            for value, arrived in requests.seen
            if "probe" in value.get("context", {})
        ]
        broker = [
            arrived - value["properties"]["probe"]
            for value, arrived in echoes.seen
            if "probe" in value.get("properties", {})
        ]
        p99 = percentile_ms(through, 0.99) or 0.0
        p50 = percentile_ms(through, 0.5) or 0.0
        base99 = percentile_ms(broker, 0.99) or 0.0
        base50 = percentile_ms(broker, 0.5) or 0.0
        options.log(
            f"  p50 {p50:.1f} ms, p99 {p99:.1f} ms "
            f"(broker round trip p50 {base50:.1f}, p99 {base99:.1f})"
        )
        self.figures.append(
            Figure(
                f"trigger -> dispatch.requests at {options.rate:,.0f}/s (p50 {p50:.0f} ms)",
                p99,
                "ms p99",
                f"broker round trip p99 {base99:.1f} ms (p50 {base50:.0f})",
                p99 / base99 if base99 else None,
                f"< {TARGET_P99_MS:.0f}",
                p99 < TARGET_P99_MS,
            )
        )


# --- data ------------------------------------------------------------------------------------


def _wait_then_send(trigger: str) -> dict[str, Any]:
    return {
        "triggers": [{"kind": "event", "event": trigger}],
        "goal": {"event": "Order Completed", "within": "P7D"},
        "steps": [
            {"id": "wait", "type": "wait", "duration": "P1D", "next": "mail"},
            {"id": "mail", "type": "send", "channels": ["email"], "template_id": "t", "next": "x"},
            {"id": "x", "type": "exit"},
        ],
    }


def _consumer_journeys() -> dict[str, dict[str, Any]]:
    return {f"bench-{i}": _wait_then_send(f"Bench Trigger {i}") for i in range(JOURNEYS)}


_NOISE = ("Page Viewed", "Product Viewed", "Searched", "Added to Wishlist", "Screen Viewed")


def _event_mix(count: int, customers: int) -> list[Message]:
    """1 % triggers, 4 % goal events, the rest read by no journey."""
    rng = random.Random(7)
    at = datetime.now(UTC)
    messages = []
    for i in range(count):
        draw = rng.random()
        if draw < 0.01:
            name = f"Bench Trigger {rng.randrange(JOURNEYS)}"
        elif draw < 0.05:
            name = "Order Completed"
        else:
            name = _NOISE[i % len(_NOISE)]
        event = CustomerEvent(
            type=EventType.TRACK,
            message_id=f"bench-{i}",
            user_id=f"customer-{rng.randrange(customers)}",
            event=name,
            properties={"path": "/products/42", "revenue": 30},
            timestamp=at,
            received_at=at,
        )
        messages.append(Message(CUSTOMER_EVENTS, event.key, event.to_bytes()))
    return messages


async def _publish_journeys(url: str, documents: dict[str, dict[str, Any]]) -> None:
    engine = create_engine(DatabaseSettings(url=url))
    try:
        async with engine.begin() as conn:
            for journey_id, document in documents.items():
                await conn.execute(
                    insert(journeys).values(
                        id=journey_id, name=journey_id, status="active", draft=document, version=1
                    )
                )
                await conn.execute(
                    insert(versions).values(journey_id=journey_id, version=1, definition=document)
                )
    finally:
        await engine.dispose()


async def _seed_waiting_runs(url: str, count: int, *, due: datetime) -> None:
    """``count`` runs of journey ``timers`` waiting at step ``wait``, their timers due."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(
            """
            INSERT INTO journey.runs (run_id, journey_id, journey_version, customer_id, status,
                step_id, on_steps, holdout, variant, entered_at, wake_at, state, updated_at)
            SELECT 'run-' || i, 'timers', 1, 'customer-' || i, 'active', 'wait', true, false,
                NULL, $1::timestamptz - interval '1 day', $1::timestamptz,
                jsonb_build_object('waiting', jsonb_build_object('kind', 'duration',
                    'until', to_char($1::timestamptz AT TIME ZONE 'UTC',
                                     'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                    'event', NULL, 'match', NULL, 'dispatchId', NULL),
                    'triggerEvent', 'Bench Timer Trigger', 'trigger', '{}'::jsonb,
                    'visits', '{"wait": 1}'::jsonb, 'seq', 3),
                $1::timestamptz
            FROM generate_series(1, $2) AS i
            """,
            due,
            count,
        )
        await conn.execute(
            "INSERT INTO journey.run_timers (run_id, due_at) "
            "SELECT run_id, wake_at FROM journey.runs"
        )
        await conn.execute("ANALYZE journey.runs; ANALYZE journey.run_timers")
    finally:
        await conn.close()


async def _bare_claims(url: str, count: int, chunk: int, now: datetime) -> float:
    """Rows/s of claiming and deleting ``count`` due rows of a bare timer table."""
    from sqlalchemy import Column, Text

    metadata = MetaData(schema="public")
    bare = timer_table(metadata, "bench_bare_timers", Column("run_id", Text))
    engine = create_engine(DatabaseSettings(url=url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.execute(
                text(
                    "INSERT INTO public.bench_bare_timers (run_id, due_at) "
                    "SELECT 'run-' || i, :due FROM generate_series(1, :n) AS i"
                ),
                {"due": now - timedelta(seconds=1), "n": count},
            )
            await conn.execute(text("ANALYZE public.bench_bare_timers"))
        claimed = 0
        started = time.perf_counter()
        while claimed < count:
            async with engine.begin() as conn:
                rows = await claim_due(conn, table=bare, now=now, limit=chunk)
            if not rows:
                break
            claimed += len(rows)
        return claimed / (time.perf_counter() - started)
    finally:
        await engine.dispose()


# --- broker helpers --------------------------------------------------------------------------


async def _produce(kafka: KafkaSettings, topic: str, messages: list[Message]) -> None:
    publisher = EventPublisher(kafka, client_id="bench-journey-producer")
    await publisher.start()
    try:
        for start in range(0, len(messages), PRODUCE_CHUNK):
            chunk = messages[start : start + PRODUCE_CHUNK]
            await publisher.publish_many(Message(topic, m.key, m.value) for m in chunk)
    finally:
        await publisher.stop()


async def _decode_rate(bootstrap: str, topic: str, count: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        read = 0
        started: float | None = None
        while read < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=2_000)
            if started is None and batches:
                started = time.perf_counter()
            for messages in batches.values():
                for message in messages:
                    CustomerEvent.from_bytes(message.value)
                read += len(messages)
        assert started is not None
        return read / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def _serve_journey(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "tenure", "serve", "journey"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def _ready(url: str, process: subprocess.Popen[bytes]) -> None:
    """Wait until the service answers ``/readyz`` with 200."""
    async with httpx.AsyncClient(timeout=2.0) as client:
        for _ in range(int(STALL_TIMEOUT_S / 0.2)):
            if process.poll() is not None:
                raise RuntimeError(f"the journey service exited with {process.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError("the journey service never became ready")


async def _produce_at_rate(
    kafka: KafkaSettings, trigger: str, rate: float, seconds: float, *, stamp: str = "probe"
) -> int:
    """Trigger events at ``rate``/s, each stamped with its production time (property
    ``stamp``); at least one."""
    publisher = EventPublisher(kafka, client_id="bench-journey-probe")
    await publisher.start()
    sent = 0
    tick = 0.01
    try:
        started = time.perf_counter()
        pending: set[asyncio.Task[Any]] = set()
        while (elapsed := time.perf_counter() - started) < seconds or sent == 0:
            due = max(int(elapsed * rate) - sent, 1 if sent == 0 else 0)
            if due > 0:
                at = datetime.now(UTC)
                batch = []
                for _ in range(due):
                    event = CustomerEvent(
                        type=EventType.TRACK,
                        message_id=f"probe-{uuid.uuid4().hex}",
                        user_id=f"probe-{sent}",
                        event=trigger,
                        properties={stamp: time.time()},
                        timestamp=at,
                        received_at=at,
                    )
                    batch.append(Message(CUSTOMER_EVENTS, event.key, event.to_bytes()))
                    sent += 1
                task = asyncio.create_task(publisher.publish_many(batch))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.sleep(tick)
        await asyncio.gather(*pending)
    finally:
        await publisher.stop()
    return sent


class _Tail(TopicReader):
    """Reads a topic from its end as of :meth:`start`, noting each value's arrival."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(
            AIOKafkaConsumer(
                bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
            ),
            poll_ms=20,
        )
        self.topic = topic
        self.seen: list[tuple[dict[str, Any], float]] = []

    async def prepare(self) -> None:
        partitions = self._consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)

    def take(self, record: ConsumerRecord[bytes, bytes], arrived: float) -> None:
        self.seen.append((orjson.loads(record.value), arrived))

    async def wait(self, matches: Callable[[dict[str, Any]], bool], count: int) -> None:
        for _ in range(int(STALL_TIMEOUT_S / 0.1)):
            if sum(1 for value, _ in self.seen if matches(value)) >= count:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.topic}: fewer than {count} records arrived")


def format_table(figures: Sequence[Figure]) -> str:
    lines = [
        "| scenario | figure | baseline (same run) | ratio | target | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        ratio = f"{f.ratio:.2f}×" if f.ratio is not None else ""
        lines.append(
            f"| {f.scenario} | {f.value:,.1f} {f.unit} | {f.baseline} | {ratio} | {f.target} | "
            f"{'PASS' if f.passed else 'MISS'} |"
        )
    return "\n".join(lines)


async def run_journey_bench(*, duration_s: float, quick: bool) -> int:
    options = JourneyBenchOptions.for_run(duration_s=duration_s, quick=quick)
    started = datetime.now(UTC)
    try:
        figures = await JourneyBench(options).run()
    except (RuntimeError, TimeoutError, ValueError, OSError, asyncpg.PostgresError) as exc:
        print(f"tenure bench journey: {exc!r}", file=sys.stderr)
        return 2
    print(
        f"tenure bench journey: {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"{options.events:,} events, {options.timers:,} timers, {options.rate:,.0f}/s for "
        f"{options.latency_s:g}s{' (quick)' if quick else ''}"
    )
    print(format_table(figures))
    misses = [f for f in figures if not f.passed]
    for miss in misses:
        print(f"MISS {miss.scenario}: {miss.value:,.1f} {miss.unit}, target {miss.target}")
    return 1 if misses and not quick else 0


def journey_bench(*, duration_s: float, quick: bool) -> int:
    """:func:`run_journey_bench` for callers outside an event loop (the CLI)."""
    return asyncio.run(run_journey_bench(duration_s=duration_s, quick=quick))
