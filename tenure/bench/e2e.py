"""``tenure bench e2e``: the whole pipeline, from ingest's acknowledgement to the email.

The stack runs as ``tenure dev`` runs it (:class:`tenure.dev.DevStack`: the embedded
broker and PostgreSQL, every service its own process, in a temporary state directory
on free ports), the dispatcher's SMTP pointed at a sink in a process of its own that
logs the time it accepts each email (``python -m tenure.sinks --accept-log``). The
demo's programme is set up and its five journeys published (:meth:`tenure.demo.run.Demo.setup`
and :meth:`~tenure.demo.run.Demo.publish`); the traffic is :mod:`tenure.bench.e2e_traffic`
(mostly browsing, about 2 % of events starting an email), posted to ``/v1/batch`` in
batches of 100 by an open-loop generator in this process (uvloop and the load
generator's lean HTTP/1.1 connections; each batch leaves on its schedule, whatever
the answers before it).

In order:

1. **Baselines, same run, same broker** (the stack idle): the raw aiokafka producer
   (:func:`tenure.bench.rawproducer.run_raw_producer`, a spawned process) into a
   scratch topic, then a bare consumer reading that topic back (no decoding).
2. **Warm-up** at 1,000 events/s; the consumer groups are found
   (:class:`tenure.bench.lag.LagProbe`).
3. **Latency** at a fixed 1,000 events/s: for each customer who signs up, from the
   moment ingest answered the batch to the moment the sink accepted their first
   email (the address holds the customer id), when the journeys send it at once
   (:data:`IMMEDIATE`, told by the subject); p50/p99, and each part's CPU.
4. **Steps** (1,000 → 2,000 → 4,000 → 8,000 → 12,000 → 16,000 events/s by default): each
   step's lag of every group is sampled; a group is bounded when its lag's least-squares
   slope over the step's last part (the last minute; half the step when shorter) is at
   most 5 % of its topics' inflow plus one second of that inflow spread over the window
   (commits come in batches; 2 messages/s for an idle topic), and its mean lag there
   is at most 10 s of that inflow. A step is sustained
   when every group is bounded and the generator delivered 95 % of the offered rate.
   The steps stop at the first one not sustained.

Verdicts against the targets (on 2 cores, the load generator included): at least
8,000 events/s sustained; p99 event → email under 500 ms at 1,000 events/s.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import uvloop
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.kafka.topics import ensure_topics
from shared.settings import KafkaSettings
from tenure.bench import cpu
from tenure.bench.e2e_traffic import ShopTraffic, customer_of
from tenure.bench.idle import free_port_run, postmaster_pid
from tenure.bench.lag import LagProbe, LagSample
from tenure.bench.loadgen import HttpConnection, request_head
from tenure.bench.rawproducer import run_raw_producer
from tenure.bench.report import Figure, format_columns, format_figures, percentile_ms
from tenure.dev import DevOptions, DevStack
from tenure.embedded import free_port, wait_for_port
from tenure.lifetime import die_with_parent

TARGET_EVENTS_PER_S = 8_000
TARGET_P99_MS = 500.0
LATENCY_RATE = 1_000.0
BATCH = 100
#: batches in flight at most; past that the generator is behind and skips a batch
MAX_IN_FLIGHT = 64
#: a group is bounded when its lag grows over the window by at most this share of what
#: arrived in it, plus this many seconds of its inflow (commits come in batches), or by
#: this many messages a second on a quiet topic
SLOPE_SHARE = 0.05
SLOPE_NOISE_S = 1.0
SLOPE_FLOOR = 2.0
#: nor is its mean lag over the window more than this many seconds of its inflow
MAX_BEHIND_S = 10.0
#: a step is sustained when the generator delivered this share of the offered rate
DELIVERED_SHARE = 0.95
#: the CPU table's keys for the whole machine, and for what ran beside the bench
MACHINE = "(machine)"
OTHER = "other processes"
#: the demo templates its journeys send as soon as the event arrives (welcome, and the
#: post-purchase A/B of a first order in the same batch); the others follow a wait
IMMEDIATE = frozenset({"demo-welcome-1", "demo-thanks-a", "demo-thanks-b"})
DEFAULT_STEPS = (1_000, 2_000, 4_000, 8_000, 12_000, 16_000)
QUICK_STEPS = (1_000, 2_000, 4_000)


@dataclass(frozen=True, slots=True)
class E2eOptions:
    steps: tuple[int, ...]
    step_s: float
    warmup_s: float
    latency_s: float
    #: how long to wait for the latency phase's last emails
    drain_s: float
    baseline_s: float
    sample_every_s: float
    quick: bool

    @classmethod
    def for_run(
        cls, *, quick: bool, steps: Sequence[int] | None, step_s: float | None
    ) -> E2eOptions:
        if quick:
            return cls(
                steps=tuple(steps or QUICK_STEPS),
                step_s=step_s or 12.0,
                warmup_s=8.0,
                latency_s=15.0,
                drain_s=20.0,
                baseline_s=3.0,
                sample_every_s=1.5,
                quick=True,
            )
        return cls(
            steps=tuple(steps or DEFAULT_STEPS),
            step_s=step_s or 300.0,
            warmup_s=30.0,
            latency_s=120.0,
            drain_s=60.0,
            baseline_s=20.0,
            sample_every_s=5.0,
            quick=False,
        )

    @property
    def window_s(self) -> float:
        """The part of a step whose lag must be flat: its last minute, at most half of it."""
        return min(60.0, self.step_s / 2)


@dataclass(slots=True)
class Drive:
    """What the generator did over one phase."""

    offered: float
    seconds: float
    accepted: int = 0
    failed: int = 0
    skipped: int = 0
    #: customer id -> when ingest acknowledged the batch that signed them up (time.time())
    acked: dict[str, float] = field(default_factory=dict)
    #: failed batches by what went wrong
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def delivered(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0


@dataclass(slots=True)
class Latency:
    """The latency phase: event -> email seconds, and each part's CPU over the phase."""

    seconds: list[float]
    probes: int
    #: sign-ups whose first email was one the journeys send after a wait, by template
    later: Counter[str]
    cpu_s: dict[str, float]
    span_s: float
    events: int


@dataclass(frozen=True, slots=True)
class GroupLag:
    """A consumer group's lag over a step's window."""

    #: least-squares slope of its lag, messages/s
    slope: float
    #: messages/s arriving on the partitions it consumes
    inflow: float
    last: int
    mean: float

    @property
    def behind_s(self) -> float:
        """Its mean lag in seconds of inflow."""
        return self.mean / self.inflow if self.inflow else 0.0


@dataclass(slots=True)
class Step:
    rate: int
    drive: Drive
    samples: list[LagSample]
    groups: dict[str, GroupLag]
    #: the window over which the lag must be flat, as configured
    flat_s: float
    #: part -> CPU seconds over the window, and the window's length as measured
    cpu_s: dict[str, float]
    window_s: float
    accepted_in_window: int

    def bound(self, inflow: float) -> float:
        """The steepest lag slope (messages/s) bounded for a group with this inflow."""
        return max(inflow * (SLOPE_SHARE + SLOPE_NOISE_S / self.flat_s), SLOPE_FLOOR)

    def excess(self, lag: GroupLag) -> float:
        """How far past its bounds a group is (> 0: unbounded), the worse of its slope's
        and its mean lag's, as a share of the bound."""
        slope = (lag.slope - self.bound(lag.inflow)) / self.bound(lag.inflow)
        return max(slope, lag.behind_s / MAX_BEHIND_S - 1)

    @property
    def unbounded(self) -> list[str]:
        return [g for g, lag in self.groups.items() if self.excess(lag) > 0]

    @property
    def sustained(self) -> bool:
        return (
            not self.unbounded
            and self.drive.delivered >= DELIVERED_SHARE * self.rate
            and not self.drive.failed
        )


# --- the command -------------------------------------------------------------------------


def e2e_bench(
    *,
    duration_s: float,
    quick: bool,
    steps: Sequence[int] | None = None,
    step_seconds: float | None = None,
    **_: Any,
) -> int:
    options = E2eOptions.for_run(quick=quick, steps=steps, step_s=step_seconds)
    with tempfile.TemporaryDirectory(prefix="tenure-e2e-") as state_dir:
        state = Path(state_dir)
        accept_log = state / "accepted.tsv"
        sink: subprocess.Popen[bytes] | None = None
        stack: DevStack | None = None
        try:
            try:
                sink, smtp_port = _start_sink(accept_log)
                base = free_port_run(7)
                stack = DevStack(
                    DevOptions(kafka_port=free_port(), base_port=base, state_dir=state)
                )
                stack.env.update(
                    TENURE_SMTP_HOST="127.0.0.1",
                    TENURE_SMTP_PORT=str(smtp_port),
                    TENURE_SMTP_SECURITY="none",
                )
                stack.start()
                _set_up_demo(stack, state, base)
            except Exception as exc:
                print(f"tenure bench e2e: the stack did not start: {exc!r}", file=sys.stderr)
                return 2
            bench = E2eBench(options, stack, sink, accept_log)
            try:
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    return runner.run(bench.run())
            except (RuntimeError, TimeoutError, OSError) as exc:
                print(f"tenure bench e2e: {exc!r}", file=sys.stderr)
                return 2
        finally:
            if stack is not None:
                stack.stop()
            if sink is not None:
                sink.terminate()
                sink.wait(timeout=10)


def _start_sink(accept_log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The SMTP sink in a process of its own, logging each acceptance."""
    smtp_port, http_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tenure.sinks",
            "--smtp-port",
            str(smtp_port),
            "--http-port",
            str(http_port),
            "--accept-log",
            str(accept_log),
        ],
        preexec_fn=die_with_parent(),  # only calls prctl: safe with threads
    )
    try:
        wait_for_port(smtp_port, timeout_s=30)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, smtp_port


def _set_up_demo(stack: DevStack, state: Path, base: int) -> None:
    """The demo's segments, templates and journeys, the journeys published."""
    from tenure.demo.client import Endpoints
    from tenure.demo.run import Demo, DemoOptions

    demo = Demo(
        DemoOptions(
            state_dir=state,
            customers=1,
            endpoints=Endpoints.from_base_port(base),
            write_key=stack.write_key,
            admin_token=stack.admin_token,
            quiet=True,
        )
    )
    try:
        demo.setup()
        demo.publish()
    finally:
        demo.api.close()
    _say("the demo's programme is set up and its five journeys published")


def _latency_note(latency: Latency) -> str:
    note = f"{len(latency.seconds)} of {latency.probes} sign-ups timed"
    if latency.later:
        later = ", ".join(f"{name} {count}" for name, count in latency.later.most_common())
        note += f"; first email after a wait (not timed): {later}"
    missing = latency.probes - len(latency.seconds) - sum(latency.later.values())
    return note + (f"; {missing} without an email" if missing else "")


def _progress(step: Step) -> str:
    worst = ", ".join(step.unbounded) or "none"
    verdict = "sustained" if step.sustained else "NOT sustained"
    errors = ", ".join(f"{name} x{count}" for name, count in step.drive.errors.items())
    return (
        f"{step.rate:,} events/s: delivered {step.drive.delivered:,.0f}/s, unbounded: {worst} "
        f"-> {verdict}" + (f" (failed batches: {errors})" if errors else "")
    )


def _say(message: str) -> None:
    print(f"e2e: {message}", file=sys.stderr, flush=True)


# --- the run -----------------------------------------------------------------------------


class E2eBench:
    def __init__(
        self,
        options: E2eOptions,
        stack: DevStack,
        sink: subprocess.Popen[bytes],
        accept_log: Path,
    ) -> None:
        self.o = options
        self.stack = stack
        self.accept_log = accept_log
        self.bootstrap = stack.env["TENURE_KAFKA_BOOTSTRAP_SERVERS"]
        self.run_id = uuid.uuid4().hex[:8]
        self.traffic = ShopTraffic(f"e2e-{self.run_id}")
        self.parts: dict[str, list[int]] = {n: [p.pid] for n, p in stack.processes.items()}
        if stack.broker is not None and stack.broker.process is not None:
            self.parts["broker"] = [stack.broker.process.pid]
        postmaster = postmaster_pid(stack)
        if postmaster is not None:
            self.parts["postgresql"] = [postmaster]
        if stack.prometheus is not None:  # tenure dev's, when installed: it scrapes every 5 s
            self.parts["prometheus"] = [stack.prometheus.pid]
        self.parts["smtp sink"] = [sink.pid]
        self.parts["bench (loadgen)"] = [os.getpid()]
        self.poster = _Poster(stack.ports["ingest"], stack.write_key)

    async def run(self) -> int:
        started = datetime.now(UTC)
        raw, bare = await self._baselines()
        probe = LagProbe(self.bootstrap)
        try:
            _say(f"warm-up: {LATENCY_RATE:,.0f} events/s for {self.o.warmup_s:g}s")
            await self._drive(LATENCY_RATE, self.o.warmup_s)
            await probe.start()
            try:
                groups = await probe.discover()
                _say(f"consumer groups: {', '.join(groups)}")
                latency = await self._latency()
                steps = []
                for rate in self.o.steps:
                    await probe.discover()
                    step = await self._step(rate, probe)
                    steps.append(step)
                    _say(_progress(step))
                    if not step.sustained:
                        break
            finally:
                await probe.stop()
        finally:
            self.poster.close()
        return self._report(started, raw, bare, latency, steps)

    # --- baselines ---------------------------------------------------------------------------

    async def _baselines(self) -> tuple[float, float]:
        topic = f"bench-e2e-raw-{self.run_id}"
        await ensure_topics(KafkaSettings(bootstrap_servers=self.bootstrap), [topic])
        _say(f"baseline: the raw producer for {self.o.baseline_s:g}s")
        broker = self.parts.get("broker", [None])[0]
        result = await asyncio.to_thread(
            run_raw_producer,
            self.bootstrap,
            warmup_s=1.0,
            duration_s=self.o.baseline_s,
            run_id=self.run_id,
            broker_pid=broker,
            topic=topic,
        )
        raw = result.messages / result.elapsed_s
        _say("baseline: a bare consumer reading it back")
        bare = await _bare_read_rate(self.bootstrap, topic, result.messages)
        return raw, bare

    # --- the generator ------------------------------------------------------------------------

    async def _drive(self, rate: float, seconds: float, drive: Drive | None = None) -> Drive:
        """Post batches of :data:`BATCH` at ``rate`` events/s for ``seconds``, open loop
        (into ``drive``, whose counts a sampler may read meanwhile)."""
        loop = asyncio.get_running_loop()
        drive = drive or Drive(offered=rate, seconds=seconds)
        interval = BATCH / rate
        in_flight: set[asyncio.Task[None]] = set()
        began = loop.time()
        for index in range(round(seconds / interval)):
            await asyncio.sleep(max(0.0, began + index * interval - loop.time()))
            if len(in_flight) >= MAX_IN_FLIGHT:
                drive.skipped += 1
                continue
            body, signed_up = self.traffic.batch(BATCH)
            task = asyncio.create_task(self._post(body, signed_up, drive))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)
        return drive

    async def _post(self, body: bytes, signed_up: list[str], drive: Drive) -> None:
        try:
            status, answer = await self.poster.post(body)
            acked = time.time()
            accepted = int(orjson.loads(answer).get("accepted", BATCH)) if status == 200 else 0
        except Exception as exc:  # any failure is counted, none lost in a task
            drive.failed += BATCH
            drive.errors[type(exc).__name__] += 1
            return
        if status != 200:
            drive.failed += BATCH
            drive.errors[f"HTTP {status}"] += 1
            return
        drive.accepted += accepted
        drive.failed += BATCH - accepted
        for customer in signed_up:
            drive.acked[customer] = acked

    # --- latency ------------------------------------------------------------------------------

    async def _latency(self) -> Latency:
        _say(f"latency: {LATENCY_RATE:,.0f} events/s for {self.o.latency_s:g}s")
        first, began = self._cpu(), time.monotonic()
        drive = await self._drive(LATENCY_RATE, self.o.latency_s)
        used = _delta(first, self._cpu())
        span = time.monotonic() - began
        deadline = time.monotonic() + self.o.drain_s
        accepted = _accepted(self.accept_log)
        while time.monotonic() < deadline and not drive.acked.keys() <= accepted.keys():
            await asyncio.sleep(0.5)
            accepted = _accepted(self.accept_log)
        latencies, later = [], Counter[str]()
        for customer, acked in drive.acked.items():
            if customer not in accepted:
                continue
            at, template = accepted[customer]
            if template in IMMEDIATE:
                latencies.append(at - acked)
            else:
                later[template or "unknown"] += 1
        return Latency(latencies, len(drive.acked), later, used, span, drive.accepted)

    # --- one step -------------------------------------------------------------------------------

    async def _step(self, rate: int, probe: LagProbe) -> Step:
        _say(f"step: {rate:,} events/s for {self.o.step_s:g}s")
        samples: list[LagSample] = []
        window: dict[str, Any] = {}
        loop = asyncio.get_running_loop()
        window_at = loop.time() + self.o.step_s - self.o.window_s
        drive_state = Drive(offered=rate, seconds=self.o.step_s)

        async def sample() -> None:
            """Every few seconds, the lags; once the window opens, the CPU so far."""
            while True:
                samples.append(await probe.sample())
                if "cpu" not in window and loop.time() >= window_at:
                    window["cpu"], window["at"] = self._cpu(), time.monotonic()
                    window["accepted"] = drive_state.accepted
                await asyncio.sleep(self.o.sample_every_s)

        sampler = asyncio.create_task(sample())
        try:
            drive = await self._drive(rate, self.o.step_s, drive_state)
            samples.append(await probe.sample())
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        ended = time.monotonic()
        first_cpu = window.get("cpu") or self._cpu()
        cpu_s = _delta(first_cpu, self._cpu())
        window_from = window.get("at", ended)
        in_window = [s for s in samples if s.at >= window_from - 0.01]
        return Step(
            rate=rate,
            drive=drive,
            samples=samples,
            groups=_slopes(in_window),
            flat_s=self.o.window_s,
            cpu_s=cpu_s,
            window_s=max(ended - window_from, 1e-9),
            accepted_in_window=drive.accepted - int(window.get("accepted", drive.accepted)),
        )

    def _cpu(self) -> dict[str, float]:
        """CPU seconds so far of each part, and of the whole machine (:data:`MACHINE`)."""
        used = cpu.tree_cpu(self.parts, alone=(os.getpid(),), reaped=True)
        machine = cpu.sample(time.monotonic(), {})
        if machine is not None:
            used[MACHINE] = machine.machine
        return used

    # --- the report -----------------------------------------------------------------------------

    def _report(
        self,
        started: datetime,
        raw: float,
        bare: float,
        latency: Latency,
        steps: list[Step],
    ) -> int:
        sustained = [s for s in steps if s.sustained]
        best = max(sustained, key=lambda s: s.rate) if sustained else None
        best_rate = best.drive.delivered if best else 0.0
        p50, p99 = percentile_ms(latency.seconds, 0.50), percentile_ms(latency.seconds, 0.99)
        load = os.getloadavg()[0]
        print(
            f"tenure bench e2e: {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
            f"load average {load:.1f}, steps {', '.join(f'{r:,}' for r in self.o.steps)} "
            f"events/s x {self.o.step_s:g}s (flat over the last {self.o.window_s:g}s)"
            + (" (quick)" if self.o.quick else "")
        )
        bare_ratio = f" ({best_rate / bare:.3f}x)" if bare else ""
        figures = [
            Figure(
                "e2e sustained, lags bounded",
                best_rate,
                "events/s",
                f"raw producer {raw:,.0f}/s",
                best_rate / raw if raw else None,
                f">= {TARGET_EVENTS_PER_S:,}/s",
                best_rate >= TARGET_EVENTS_PER_S,
                note=(
                    (f"highest step sustained {best.rate:,}/s" if best else "no step sustained")
                    + f"; bare consumer read {bare:,.0f}/s{bare_ratio}"
                ),
            ),
            Figure(
                f"e2e event->email p99 @{LATENCY_RATE / 1000:g}k/s",
                p99 if p99 is not None else float("nan"),
                "ms",
                f"p50 {_ms(p50)} ms",
                None,
                f"< {TARGET_P99_MS:g} ms",
                p99 is not None and p99 < TARGET_P99_MS,
                note=_latency_note(latency),
            ),
        ]
        print(format_figures(figures))
        print()
        print(_steps_table(steps))
        print()
        columns = [(f"at {LATENCY_RATE:,.0f}/s", latency.cpu_s, latency.span_s, latency.events)]
        failed = next((s for s in steps if not s.sustained), None)
        for step, title in ((best, "at {:,}/s"), (failed, "at {:,}/s, behind")):
            if step is not None and step.rate != LATENCY_RATE:
                window = (step.cpu_s, step.window_s, step.accepted_in_window)
                columns.append((title.format(step.rate), *window))
        print(_cpu_table(columns))
        print(
            "% core: share of one core over the window; us/event: CPU microseconds per event "
            "ingest accepted in it (a step that falls behind processes fewer than it accepts);\n"
            "other processes: the rest of the machine's busy time meanwhile (neighbours, the OS)"
        )
        _write_json(self.o, figures, latency, steps)
        misses = [f for f in figures if not f.passed]
        for miss in misses:
            print(f"MISS {miss.scenario}: {miss.value:,.1f} {miss.unit}, target {miss.target}")
        if self.o.quick:
            print("(a --quick run: too short for its figures to be judged)")
        return 1 if misses and not self.o.quick else 0


# --- helpers ---------------------------------------------------------------------------------


class _Poster:
    """POSTs to ingest's ``/v1/batch`` over keep-alive connections, one request in flight
    on each, opened as needed (:class:`tenure.bench.loadgen.HttpConnection`: a few
    microseconds a request where httpx takes hundreds, so that the generator, which
    shares the machine, costs the stack little)."""

    def __init__(self, port: int, write_key: str, timeout_s: float = 30.0) -> None:
        self._port = port
        self._head = request_head("/v1/batch", "127.0.0.1", port, write_key)
        self._timeout_s = timeout_s
        self._idle: list[HttpConnection] = []

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """The answer's status and body. A kept connection the server closed meanwhile
        (uvicorn closes one idle for 5 s) is replaced, and the batch sent again on a new
        one (ingest deduplicates by ``messageId``)."""
        request = b"%s%d\r\n\r\n%s" % (self._head, len(body), body)
        conn = self._kept()
        if conn is not None:
            try:
                return await self._send(conn, request)
            except (ConnectionError, RuntimeError):
                pass  # closed under us: once more on a new connection
        return await self._send(await self._connect(), request)

    def _kept(self) -> HttpConnection | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    async def _connect(self) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(HttpConnection, "127.0.0.1", self._port)
        return conn

    async def _send(self, conn: HttpConnection, request: bytes) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        try:
            status = await asyncio.wait_for(conn.request(request, loop), self._timeout_s)
        except BaseException:
            if conn.transport is not None:
                conn.transport.abort()
            raise
        self._idle.append(conn)
        return status, conn.body

    def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()


async def _bare_read_rate(bootstrap: str, topic: str, count: int) -> float:
    """Records/s a bare consumer reads ``topic`` back from its start, without decoding."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        read, began = 0, None
        deadline = time.monotonic() + 120
        while read < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            if began is None and batches:
                began = time.perf_counter()
            read += sum(len(records) for records in batches.values())
        if began is None:
            raise RuntimeError("the bare consumer read nothing")
        return read / (time.perf_counter() - began)
    finally:
        await consumer.stop()


def _accepted(path: Path) -> dict[str, tuple[float, str | None]]:
    """Customer id -> when the sink accepted their first email, and its demo template
    (from the sink's accept log)."""
    from tenure.demo.run import template_of

    found: dict[str, tuple[float, str | None]] = {}
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        at, recipients, subject = (line.split("\t", 2) + ["", ""])[:3]
        for address in recipients.split(","):
            customer = customer_of(address)
            if customer is not None and customer not in found:
                found[customer] = (float(at), template_of(subject))
    return found


def _delta(first: Mapping[str, float], last: Mapping[str, float]) -> dict[str, float]:
    return {name: last[name] - first[name] for name in first}


def _slopes(samples: Sequence[LagSample]) -> dict[str, GroupLag]:
    """Per group: its lag's least-squares slope, its inflow, its last and mean lag."""
    out: dict[str, GroupLag] = {}
    if len(samples) < 2:
        return out
    groups = set(samples[-1].lag)
    for group in groups:
        points = [(s.at, s.lag[group], s.produced[group]) for s in samples if group in s.lag]
        if len(points) < 2:
            continue
        times = [p[0] for p in points]
        mean_t = sum(times) / len(times)
        mean_l = sum(p[1] for p in points) / len(points)
        var = sum((t - mean_t) ** 2 for t in times)
        slope = sum((t - mean_t) * (p[1] - mean_l) for t, p in zip(times, points, strict=True))
        slope = slope / var if var else 0.0
        inflow = (points[-1][2] - points[0][2]) / (times[-1] - times[0])
        out[group] = GroupLag(slope, inflow, points[-1][1], mean_l)
    return out


_STEP_COLUMNS = (
    ("offered/s", ">", 9),
    ("delivered/s", ">", 11),
    ("skipped", ">", 7),
    ("failed", ">", 6),
    ("worst group", "<", 22),
    ("its slope/s", ">", 11),
    ("inflow/s", ">", 9),
    ("last lag", ">", 9),
    ("behind s", ">", 8),
    ("verdict", "<", 13),
)


def _steps_table(steps: Sequence[Step]) -> str:
    rows = []
    for step in steps:
        worst = max(step.groups.items(), key=lambda item: step.excess(item[1]), default=None)
        name, lag = worst if worst else ("-", GroupLag(0.0, 0.0, 0, 0.0))
        rows.append(
            [
                f"{step.rate:,}",
                f"{step.drive.delivered:,.0f}",
                str(step.drive.skipped),
                str(step.drive.failed),
                name,
                f"{lag.slope:,.1f}",
                f"{lag.inflow:,.0f}",
                f"{lag.last:,}",
                f"{lag.behind_s:.1f}",
                "sustained" if step.sustained else "NOT sustained",
            ]
        )
    legend = (
        f"a group is bounded when its lag's slope over the window is at most {SLOPE_SHARE:.0%} "
        f"of its inflow plus {SLOPE_NOISE_S:g} s of inflow over the window (at least "
        f"{SLOPE_FLOOR:g}/s)\nand its mean lag there at most {MAX_BEHIND_S:g} s of inflow "
        "(behind s); worst group: the one furthest past those bounds, or nearest to them"
    )
    return format_columns(_STEP_COLUMNS, rows) + "\n" + legend


def _cpu_table(columns: Sequence[tuple[str, Mapping[str, float], float, int]]) -> str:
    """Each part's share of one core and CPU microseconds per event, per measured window;
    then their total, and what the rest of the machine used meanwhile."""
    headings: list[tuple[str, str, int]] = [("part", "<", 22)]
    for title, _, _, _ in columns:
        headings += [(f"% core {title}", ">", max(18, len(title) + 7)), ("us/event", ">", 9)]
    parts = {n: v for n, v in columns[0][1].items() if n != MACHINE}
    names = sorted(parts, key=lambda n: -parts[n])
    rows = []
    for name in [*names, "total", OTHER]:
        cells = [name]
        for _, used, span, events in columns:
            total = sum(v for n, v in used.items() if n != MACHINE)
            if name == OTHER:
                seconds = max(0.0, used[MACHINE] - total) if MACHINE in used else float("nan")
                cells += [f"{100 * seconds / span:.1f}", ""]
                continue
            seconds = total if name == "total" else used.get(name, 0.0)
            cells += [f"{100 * seconds / span:.1f}", _per_event(seconds, events)]
        rows.append(cells)
    return format_columns(headings, rows)


def _write_json(
    options: E2eOptions, figures: Sequence[Figure], latency: Latency, steps: Sequence[Step]
) -> None:
    """The figures, steps and CPU as JSON to ``$TENURE_BENCH_JSON``, when it is set."""
    target = os.environ.get("TENURE_BENCH_JSON")
    if not target:
        return
    data = {
        "options": asdict(options),
        "figures": [asdict(f) for f in figures],
        "latency_ms": sorted(1000 * s for s in latency.seconds),
        "latency_probes": latency.probes,
        "latency_later": dict(latency.later),
        "latency_cpu_s": latency.cpu_s,
        "latency_span_s": latency.span_s,
        "latency_events": latency.events,
        "steps": [
            {
                "rate": step.rate,
                "delivered": step.drive.delivered,
                "skipped": step.drive.skipped,
                "failed": step.drive.failed,
                "errors": dict(step.drive.errors),
                "sustained": step.sustained,
                "groups": {g: asdict(lag) for g, lag in step.groups.items()},
                "cpu_s": step.cpu_s,
                "window_s": step.window_s,
                "events_in_window": step.accepted_in_window,
                "lag_samples": [{"at": x.at, "lag": x.lag} for x in step.samples],
            }
            for step in steps
        ],
    }
    Path(target).write_bytes(orjson.dumps(data))


def _per_event(seconds: float, events: int) -> str:
    return f"{seconds / events * 1e6:,.0f}" if events else "-"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"
