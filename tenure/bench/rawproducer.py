"""The raw-producer baseline: ``AIOKafkaProducer.send()`` per event + ``asyncio.gather``.

It runs in a spawned process of its own, against the broker and topic ingest
publishes to, with the producer settings ingest's publisher has (``acks=all``,
batch size, request timeout) and the very bytes ingest would publish for the
benchmark's events. Each round sends :data:`ROUND` messages and gathers their
deliveries; its p50/p99 are per round.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

from tenure.bench import cpu

#: messages per ``asyncio.gather`` round
ROUND = 1_000


@dataclass(frozen=True, slots=True)
class RawResult:
    messages: int
    failed: int
    elapsed_s: float
    round_latencies: list[float]
    #: cores used in the window by this process ("server") and the broker, when measurable
    cores: dict[str, float] | None


def run_raw_producer(
    bootstrap_servers: str,
    *,
    warmup_s: float,
    duration_s: float,
    run_id: str,
    broker_pid: int | None,
    topic: str | None = None,
) -> RawResult:
    """Run the baseline in a spawned process, into ``topic`` (default ``customer.events``)."""
    ctx = mp.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_main,
        args=(bootstrap_servers, warmup_s, duration_s, run_id, broker_pid, topic, sender),
        name="tenure-bench-raw-producer",
        daemon=True,
    )
    process.start()
    sender.close()
    try:
        if not receiver.poll(warmup_s + duration_s + 120):
            raise TimeoutError("the raw-producer baseline did not report in time")
        try:
            outcome = receiver.recv()
        except EOFError:
            raise RuntimeError("the raw-producer baseline died without a report") from None
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()
            process.join()
    if isinstance(outcome, str):
        raise RuntimeError(f"the raw-producer baseline failed: {outcome}")
    assert isinstance(outcome, RawResult)
    return outcome


def _main(
    bootstrap_servers: str,
    warmup_s: float,
    duration_s: float,
    run_id: str,
    broker_pid: int | None,
    topic: str | None,
    out: Connection,
) -> None:
    import uvloop

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(
                _produce(bootstrap_servers, warmup_s, duration_s, run_id, broker_pid, topic)
            )
        out.send(result)
    except BaseException as exc:
        out.send(repr(exc))
        raise
    finally:
        out.close()


async def _produce(
    bootstrap_servers: str,
    warmup_s: float,
    duration_s: float,
    run_id: str,
    broker_pid: int | None,
    topic: str | None,
) -> RawResult:
    from aiokafka import AIOKafkaProducer

    from shared.events.customer_events import TOPIC
    from shared.settings import KafkaSettings

    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        linger_ms=settings.linger_ms,
        max_batch_size=settings.max_batch_bytes,
        max_request_size=settings.max_batch_bytes,
        request_timeout_ms=settings.request_timeout_ms,
        enable_idempotence=settings.enable_idempotence,
    )
    messages = published_messages(f"bench-{run_id}-raw".encode())
    groups = {"broker": (broker_pid,)} if broker_pid else {}
    await producer.start()
    try:
        seq = sent = failed = 0
        rounds: list[float] = []
        measure_from = time.perf_counter() + warmup_s
        stop_at = measure_from + duration_s
        first = last = None
        cpu_from = cpu_to = 0.0
        while (began := time.perf_counter()) < stop_at:
            measured = began >= measure_from
            if measured and first is None:
                first, cpu_from = cpu.sample(began, groups), time.process_time()
            batch = [messages(seq + i) for i in range(ROUND)]
            seq += ROUND
            deliveries = [
                await producer.send(topic or TOPIC, value, key=key) for key, value in batch
            ]
            results = await asyncio.gather(*deliveries, return_exceptions=True)
            if measured:
                rounds.append(time.perf_counter() - began)
                errors = sum(isinstance(r, BaseException) for r in results)
                failed += errors
                sent += len(results) - errors
        done = time.perf_counter()
        last, cpu_to = cpu.sample(done, groups), time.process_time()
    finally:
        await producer.stop()
    cores = cpu.cores_used(first, last)
    if cores is not None and first is not None:
        cores["server"] = (cpu_to - cpu_from) / (done - first.at)
        cores["other"] = max(0.0, cores["other"] - cores["server"])
    return RawResult(sent, failed, done - measure_from, rounds, cores)


def published_messages(prefix: bytes) -> Callable[[int], tuple[bytes, bytes]]:
    """``seq -> (key, value)``: the bytes ingest publishes for the benchmark's event ``seq``."""
    from datetime import UTC, datetime

    import orjson

    from services.ingest.normalize import normalize
    from tenure.bench.payloads import event, message_id, user_id

    marker = b"tenure-bench-marker"
    call = orjson.loads(event(marker, 0))
    published = (
        normalize(
            call,
            call_type=None,
            received_at=datetime.now(UTC),
            batch_sent_at="2026-03-02T10:00:01Z",
        )
        .model_dump_json(exclude_none=True)
        .encode()
    )
    template = (
        published.replace(b"%", b"%%")
        .replace(message_id(marker, 0), b"%(id)s")
        .replace(user_id(0), b"%(user)s")
    )

    def make(seq: int) -> tuple[bytes, bytes]:
        user = user_id(seq)
        return user, template % {b"id": message_id(prefix, seq), b"user": user}

    return make
