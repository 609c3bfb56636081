"""A lean closed-loop HTTP/1.1 load generator, run in processes of its own.

Each connection is a keep-alive socket that posts a request, waits for the whole
answer, and posts the next one (like ``wrk``). The client is an
:class:`asyncio.Protocol` on uvloop that writes pre-built request bytes and reads
the status line, the headers and a ``Content-Length`` body; that costs a few
microseconds a request, where httpx costs a few hundred, so on a 2-core machine
the servers, not the generator, set the pace (see docs/performance.md).

The generator never shares a process or an event loop with the servers it
measures: :func:`run_load` starts ``spec.processes`` spawned processes and merges
what they measured. Latency is ``time.perf_counter`` from writing a request to
having read its whole answer; a request unanswered after ``timeout_s`` counts as
a timeout and its connection is replaced.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import multiprocessing as mp
import os
import threading
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier, Event

from tenure.bench import cpu
from tenure.bench.payloads import BodyFactory, RequestShape

_SWEEP_INTERVAL_S = 0.05
_RECONNECT_PAUSE_S = 0.05


@dataclass(frozen=True, slots=True)
class LoadSpec:
    host: str
    port: int
    shape: RequestShape
    connections: int
    duration_s: float
    warmup_s: float
    #: the HTTP Basic username (write key), or None to send no Authorization header
    write_key: str | None = None
    timeout_s: float = 5.0
    processes: int = 1
    #: makes messageIds unique across runs that share a broker
    run_id: str = "run"


@dataclass(slots=True)
class LoadResult:
    """What the measured window (after warm-up) saw, over every process."""

    events_per_request: int
    requests: int = 0
    ok: int = 0
    non_2xx: int = 0
    timeouts: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    #: seconds, one per answered request (any status)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    #: CPU seconds the load generator processes used in the window
    loadgen_cpu_s: float = 0.0
    #: cores kept busy in the window, by group (see :func:`run_load`), when measurable
    cores: dict[str, float] | None = None

    @property
    def events_per_s(self) -> float:
        """Events in 2xx answers per second: events the server accepted."""
        return self.ok * self.events_per_request / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def requests_per_s(self) -> float:
        """Answered requests (any status) per second."""
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    def merge(self, other: LoadResult) -> None:
        self.requests += other.requests
        self.ok += other.ok
        self.non_2xx += other.non_2xx
        self.timeouts += other.timeouts
        self.errors += other.errors
        # processes run side by side over the same window
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        self.latencies.extend(other.latencies)
        self.loadgen_cpu_s += other.loadgen_cpu_s


def run_load(spec: LoadSpec, cpu_groups: dict[str, tuple[int, ...]] | None = None) -> LoadResult:
    """Drive the server for ``warmup_s + duration_s`` from fresh processes; merge their results.

    ``cpu_groups`` names process trees (e.g. ``{"server": (pid,), "broker": (pid,)}``)
    whose CPU use over the measured window goes in ``LoadResult.cores``, beside
    the load generator's, the machine's and the rest ("other": whatever else ran).
    """
    ctx = mp.get_context("spawn")  # a clean interpreter: nothing inherited from the caller
    processes = max(1, min(spec.processes, spec.connections))
    barrier = ctx.Barrier(processes)
    window = (ctx.Event(), ctx.Event())  # set by process 0 when the window opens and closes
    shares = [
        spec.connections // processes + (1 if i < spec.connections % processes else 0)
        for i in range(processes)
    ]
    samples: list[cpu.CpuSample | None] = []
    sampler = threading.Thread(
        target=_sample_window, args=(window, cpu_groups or {}, samples, spec), daemon=True
    )
    sampler.start()
    pipes: list[Connection] = []
    workers = []
    for index, connections in enumerate(shares):
        receiver, sender = ctx.Pipe(duplex=False)
        worker = ctx.Process(
            target=_process_main,
            args=(spec, index, connections, barrier, window if index == 0 else None, sender),
            name=f"tenure-loadgen-{index}",
            daemon=True,
        )
        worker.start()
        sender.close()
        pipes.append(receiver)
        workers.append(worker)
    merged = LoadResult(spec.shape.events_per_request)
    deadline = time.monotonic() + spec.warmup_s + spec.duration_s + spec.timeout_s + 60
    try:
        for receiver in pipes:
            if not receiver.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError("a load generator process did not report in time")
            try:
                message = receiver.recv()
            except EOFError:
                raise RuntimeError("a load generator process died without a report") from None
            merged.merge(_decode(message, spec.shape.events_per_request))
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.terminate()
                worker.join()
        window[0].set()
        window[1].set()
        sampler.join(timeout=5)
    if len(samples) == 2:
        merged.cores = cpu.cores_used(samples[0], samples[1])
        if merged.cores is not None and merged.elapsed_s:
            merged.cores["loadgen"] = merged.loadgen_cpu_s / spec.duration_s
            merged.cores["other"] = max(0.0, merged.cores["other"] - merged.cores["loadgen"])
    return merged


def _sample_window(
    window: tuple[Event, Event],
    groups: dict[str, tuple[int, ...]],
    out: list[cpu.CpuSample | None],
    spec: LoadSpec,
) -> None:
    """In the (idle) parent: sample CPU when process 0 says the window opens, then closes."""
    limit = spec.warmup_s + spec.duration_s + spec.timeout_s + 120
    for event in window:
        if not event.wait(limit):
            return
        out.append(cpu.sample(time.perf_counter(), groups))


# --- inside a load generator process --------------------------------------------


def _process_main(
    spec: LoadSpec,
    index: int,
    connections: int,
    barrier: Barrier,
    window: tuple[Event, Event] | None,
    out: Connection,
) -> None:
    import uvloop

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(_drive(spec, index, connections, barrier, window))
        out.send(_encode(result))
    except BaseException as exc:
        out.send({"error": repr(exc)})
        raise
    finally:
        out.close()


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0.0
        #: the last whole answer's body
        self.body = b""
        self._buffer = bytearray()
        self._body_start = 0
        self._body_end = -1
        self._status = 0
        self._waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def request(self, data: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[int]:
        """Write one request; the future is its status once the whole answer is read."""
        assert self.transport is not None
        self._waiter = loop.create_future()
        self.sent_at = time.perf_counter()
        self.transport.write(data)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if self._body_end < 0:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = bytes(buffer[:head_end]).lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                self._fail(ConnectionError("an answer without Content-Length"))
                return
            line_end = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
            self._status = int(head[9:12])
            self._body_start = head_end + 4
            self._body_end = head_end + 4 + length
        if len(buffer) >= self._body_end:
            self.body = bytes(buffer[self._body_start : self._body_end])
            del buffer[: self._body_end]
            self._body_end = -1
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(self._status)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("the server closed the connection"))

    def expire(self, now: float, timeout_s: float) -> None:
        """Fail the request in flight if it has waited longer than ``timeout_s``."""
        if self._waiter is not None and now - self.sent_at > timeout_s:
            self._fail(TimeoutError())

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()


@dataclass(slots=True)
class _Tally:
    requests: int = 0
    ok: int = 0
    non_2xx: int = 0
    timeouts: int = 0
    errors: int = 0
    last_done: float = 0.0
    cpu_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: array[float] = field(default_factory=lambda: array("d"))


class _Connections:
    """The open connections of a process, which the timeout sweeper walks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> None:
        self.loop = loop
        self.host = host
        self.port = port
        self.open: list[HttpConnection] = []

    async def connect(self) -> HttpConnection:
        _, protocol = await self.loop.create_connection(HttpConnection, self.host, self.port)
        self.open.append(protocol)
        return protocol

    async def replace(self, conn: HttpConnection, stop_at: float) -> HttpConnection | None:
        """A new connection for a failed one, or None when the run is over."""
        with contextlib.suppress(ValueError):
            self.open.remove(conn)
        while time.perf_counter() < stop_at:
            try:
                return await self.connect()
            except OSError:
                await asyncio.sleep(_RECONNECT_PAUSE_S)
        return None

    def close(self) -> None:
        for conn in self.open:
            if conn.transport is not None:
                conn.transport.close()


async def _drive(
    spec: LoadSpec,
    index: int,
    connections: int,
    barrier: Barrier,
    window: tuple[Event, Event] | None,
) -> _Tally:
    pool = _Connections(asyncio.get_running_loop(), spec.host, spec.port)
    head = _request_head(spec)
    prefix = f"bench-{spec.run_id}-{index}-{os.getpid()}".encode()
    first = [await pool.connect() for _ in range(connections)]
    barrier.wait()  # every process starts its clock together
    measure_from = time.perf_counter() + spec.warmup_s
    stop_at = measure_from + spec.duration_s
    tally = _Tally()
    sweeper = asyncio.create_task(_sweep(pool.open, spec.timeout_s))
    clock = asyncio.create_task(_mark_window(measure_from, stop_at, window, tally))
    try:
        await asyncio.gather(
            *(
                _connection_loop(
                    conn,
                    pool,
                    spec.shape.bodies(b"%s-%d" % (prefix, n)),
                    head,
                    measure_from,
                    stop_at,
                    tally,
                )
                for n, conn in enumerate(first)
            )
        )
        await clock
    finally:
        for task in (sweeper, clock):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pool.close()
    tally.last_done = max(tally.last_done, stop_at) - measure_from
    return tally


async def _mark_window(
    measure_from: float, stop_at: float, window: tuple[Event, Event] | None, tally: _Tally
) -> None:
    """Note this process's CPU time over the window; process 0 also tells the parent."""
    await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
    started = time.process_time()
    if window is not None:
        window[0].set()
    await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
    tally.cpu_s = time.process_time() - started
    if window is not None:
        window[1].set()


async def _connection_loop(
    conn: HttpConnection,
    pool: _Connections,
    bodies: BodyFactory,
    head: bytes,
    measure_from: float,
    stop_at: float,
    tally: _Tally,
) -> None:
    """Post, wait for the answer, repeat until ``stop_at``; count what was measured."""
    loop = pool.loop
    latencies = tally.latencies
    statuses = tally.statuses
    perf_counter = time.perf_counter
    seq = 0
    while True:
        body = bodies(seq)
        seq += 1
        request = b"%s%d\r\n\r\n%s" % (head, len(body), body)
        if perf_counter() >= stop_at:
            return
        waiter = conn.request(request, loop)
        sent_at = conn.sent_at
        measured = sent_at >= measure_from
        try:
            status = await waiter
        except (TimeoutError, OSError) as exc:
            timed_out = isinstance(exc, TimeoutError)
            if measured:
                if timed_out:
                    tally.timeouts += 1
                else:
                    tally.errors += 1
            if not timed_out:
                await asyncio.sleep(_RECONNECT_PAUSE_S)
            replacement = await pool.replace(conn, stop_at)
            if replacement is None:
                return
            conn = replacement
            continue
        if not measured:
            continue
        done = perf_counter()
        latencies.append(done - sent_at)
        tally.requests += 1
        tally.last_done = done
        if 200 <= status < 300:
            tally.ok += 1
        else:
            tally.non_2xx += 1
            statuses[status] = statuses.get(status, 0) + 1


async def _sweep(conns: list[HttpConnection], timeout_s: float) -> None:
    """One timer for every connection, instead of a timeout handle per request."""
    while True:
        await asyncio.sleep(_SWEEP_INTERVAL_S)
        now = time.perf_counter()
        for conn in list(conns):
            conn.expire(now, timeout_s)


def _request_head(spec: LoadSpec) -> bytes:
    return request_head(spec.shape.path, spec.host, spec.port, spec.write_key)


def request_head(path: str, host: str, port: int, write_key: str | None) -> bytes:
    """Everything of a POST before its Content-Length value."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "User-Agent: tenure-bench",
        "Content-Type: application/json",
    ]
    if write_key is not None:
        token = base64.b64encode(f"{write_key}:".encode()).decode()
        lines.append(f"Authorization: Basic {token}")
    return ("\r\n".join(lines) + "\r\nContent-Length: ").encode()


# --- results across the process boundary ----------------------------------------


def _encode(tally: _Tally) -> dict[str, object]:
    return {
        "requests": tally.requests,
        "ok": tally.ok,
        "non_2xx": tally.non_2xx,
        "timeouts": tally.timeouts,
        "errors": tally.errors,
        "elapsed_s": tally.last_done,
        "cpu_s": tally.cpu_s,
        "statuses": tally.statuses,
        "latencies": tally.latencies.tobytes(),
    }


def _decode(message: dict[str, object], events_per_request: int) -> LoadResult:
    if "error" in message:
        raise RuntimeError(f"a load generator process failed: {message['error']}")
    latencies = array("d")
    raw = message["latencies"]
    assert isinstance(raw, bytes)
    latencies.frombytes(raw)
    statuses = message["statuses"]
    assert isinstance(statuses, dict)
    return LoadResult(
        events_per_request=events_per_request,
        requests=int(message["requests"]),  # type: ignore[call-overload]
        ok=int(message["ok"]),  # type: ignore[call-overload]
        non_2xx=int(message["non_2xx"]),  # type: ignore[call-overload]
        timeouts=int(message["timeouts"]),  # type: ignore[call-overload]
        errors=int(message["errors"]),  # type: ignore[call-overload]
        elapsed_s=float(message["elapsed_s"]),  # type: ignore[arg-type]
        statuses=dict(statuses),
        latencies=latencies,
        loadgen_cpu_s=float(message["cpu_s"]),  # type: ignore[arg-type]
    )
