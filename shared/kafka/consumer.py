"""The consumer runner: decode a batch, apply it durably, then commit.

A batch goes through three steps, each a small function:

1. decode every record with its topic's decoder; undecodable ones become dead
   letters (DLQ, then carry on, within the policy's limits);
2. hand the decoded records to the handler, which applies them in one database
   transaction and returns only when that is durable; transient errors are
   retried with backoff on the same batch; when the batch fails for another
   reason it is applied record by record, and records that still fail are dead
   lettered with their error (a poison message does not stop the partition);
3. commit ``{tp: last_offset + 1}``.

Redelivery after a crash or rebalance is expected: handlers are idempotent.

Idle, the runner sleeps: it waits for records in ``getmany`` for up to
``poll_timeout_ms`` (a shutdown wakes it at once), and after ``idle_after_s``
without records it lets the broker hold each fetch ``idle_fetch_max_wait_ms``
instead of ``fetch_max_wait_ms``. A broker that answers a fetch as soon as data
arrives makes that free; the embedded broker (Tansu) holds a fetch for the whole
wait even when data arrives (measured: 0.5 s wait, 3–255 ms latency; 10 s wait,
2.5–3.5 s latency), so the first records after a quiet spell may wait up to
``idle_fetch_max_wait_ms``, and the next ones ``fetch_max_wait_ms``.

``assigned`` is set once the consumer completed its first group join, whatever
it was given (no partition at all when the group has more members than the
topics have partitions): the service's readiness waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from tenacity import AsyncRetrying

from shared.events.base import EventModel
from shared.kafka.dlq import DeadLetter, DeadLetterPolicy
from shared.kafka.metrics import BATCH_SECONDS, CONSUMED, CONSUMER_LAG, DEAD_LETTERED
from shared.retry import retrying
from shared.settings import KafkaSettings
from shared.stopping import StoppableLoop

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Record(Generic[T]):
    """A decoded message with where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: T
    timestamp_ms: int
    raw: bytes | None = field(default=None, repr=False)  # the payload as consumed


Decoder = Callable[[bytes], T]
BatchHandler = Callable[[Sequence[Record[Any]]], Awaitable[None]]
IsTransient = Callable[[BaseException], bool]


def never_transient(_: BaseException) -> bool:
    return False


class _BatchAbandoned(Exception):
    """Shutdown came while a transient error was being retried: leave it uncommitted."""


class _WaitForBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions are handed over only after the batch in hand is committed; a
    completed join sets ``joined``."""

    def __init__(self, lock: asyncio.Lock, joined: asyncio.Event) -> None:
        self._lock = lock
        self._joined = joined

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self._lock:
            pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._joined.set()


class ConsumerRunner(StoppableLoop):
    """Consumes ``topics`` in group ``group_id`` until :meth:`signal_shutdown`.

    ``run`` blocks; on shutdown it finishes the batch in hand, commits it and
    closes the consumer. Only the entry point installs signal handlers.
    """

    def __init__(
        self,
        *,
        settings: KafkaSettings,
        group_id: str,
        decoders: Mapping[str, Decoder[Any]],
        handler: BatchHandler,
        dead_letters: DeadLetterPolicy,
        is_transient: IsTransient = never_transient,
        max_records: int = 2_000,
        poll_timeout_ms: int = 5_000,
        max_retry_delay_s: float = 10.0,
        fetch_max_wait_ms: int = 500,
        idle_fetch_max_wait_ms: int = 2_000,
        idle_after_s: float = 10.0,
    ) -> None:
        self._settings = settings
        self._group_id = group_id
        self._decoders = dict(decoders)
        self._handler = handler
        self._dead_letters = dead_letters
        self._is_transient = is_transient
        self._max_records = max_records
        self._poll_timeout_ms = poll_timeout_ms
        self._max_retry_delay_s = max_retry_delay_s
        #: how long the broker may hold a fetch for data; a consumer on a latency path
        #: (journey triggers to dispatch requests) asks for less than aiokafka's 500 ms
        self._fetch_max_wait_ms = fetch_max_wait_ms
        #: the wait once idle for ``idle_after_s`` (see the module docstring)
        self._idle_fetch_max_wait_ms = max(idle_fetch_max_wait_ms, fetch_max_wait_ms)
        self._idle_after_s = idle_after_s
        super().__init__()
        self._batch_lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._retry_batch: AsyncRetrying | None = None
        self.started = asyncio.Event()
        #: set once the first group join completed (with or without partitions)
        self.assigned = asyncio.Event()

    @property
    def consumer(self) -> AIOKafkaConsumer | None:
        return self._consumer

    async def run(self) -> None:
        consumer = await self._start_consumer()
        if consumer is None:
            return
        self._consumer = consumer
        self.started.set()
        stopping = asyncio.ensure_future(self._stopping.wait())
        last_records = time.monotonic()
        try:
            while not self._stopping.is_set():
                idle_in_ms = int(1000 * (self._idle_after_s - (time.monotonic() - last_records)))
                self._set_fetch_wait(consumer, idle=idle_in_ms <= 0)
                # while records flow, come back when the idle delay ends to lengthen the wait
                timeout_ms = self._poll_timeout_ms
                if idle_in_ms > 0:
                    timeout_ms = min(timeout_ms, idle_in_ms + 1)
                fetching = asyncio.ensure_future(
                    consumer.getmany(timeout_ms=timeout_ms, max_records=self._max_records)
                )
                await asyncio.wait({fetching, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not fetching.done():  # shutdown while waiting for records
                    fetching.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await fetching
                    break
                batches = fetching.result()
                if not batches:
                    continue
                last_records = time.monotonic()
                async with self._batch_lock:
                    await self._process(consumer, batches)
        except _BatchAbandoned:
            log.warning("shutdown during retries; the batch stays uncommitted for redelivery")
        finally:
            stopping.cancel()
            with contextlib.suppress(KafkaError):
                await consumer.stop()
            log.info("consumer %s stopped", self._group_id)

    def _set_fetch_wait(self, consumer: AIOKafkaConsumer, *, idle: bool) -> None:
        """How long the broker may hold the next fetches. aiokafka reads its fetcher's
        ``_fetch_max_wait_ms`` for each request it builds (0.14: no public setter)."""
        fetcher = getattr(consumer, "_fetcher", None)
        if fetcher is not None and hasattr(fetcher, "_fetch_max_wait_ms"):
            wait = self._idle_fetch_max_wait_ms if idle else self._fetch_max_wait_ms
            fetcher._fetch_max_wait_ms = wait

    async def _start_consumer(self) -> AIOKafkaConsumer | None:
        """A started, subscribed consumer; retried with backoff while the broker is away;
        None when shutdown came first."""
        if self._stopping.is_set():
            return None
        try:
            return await retrying(
                what=f"starting consumer {self._group_id}",
                retry_on=_is_kafka_error,
                first_s=0.2,
                max_s=5.0,
                stopping=self._stopping,
                logger=log,
            )(self._try_start)
        except KafkaError:
            return None  # shutdown while the broker was away

    async def _try_start(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap_servers,
            client_id=f"{self._settings.client_id}-{self._group_id}",
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self._settings.session_timeout_ms,
            heartbeat_interval_ms=self._settings.heartbeat_interval_ms,
            max_poll_records=self._max_records,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
        )
        try:
            await consumer.start()
            consumer.subscribe(
                list(self._decoders),
                listener=_WaitForBatchOnRevoke(self._batch_lock, self.assigned),
            )
        except KafkaError:
            with contextlib.suppress(KafkaError):
                await consumer.stop()
            raise
        return consumer

    async def _process(
        self, consumer: AIOKafkaConsumer, batches: Mapping[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        started = time.perf_counter()
        records, letters = self._decode(batches)
        for topic in {tp.topic for tp in batches}:
            self._dead_letters.observe(
                topic=topic,
                valid=sum(1 for r in records if r.topic == topic),
                invalid=sum(1 for letter in letters if letter.topic == topic),
            )
        if records:
            letters.extend(await self._apply(records))
        if letters:
            await self._dead_letters.send(letters)
            for letter in letters:
                DEAD_LETTERED.labels(letter.topic, self._group_id).inc()
        offsets = {tp: msgs[-1].offset + 1 for tp, msgs in batches.items() if msgs}
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # A rebalance took the partitions: the new owner gets them again, and
            # the handler's effects are idempotent, so nothing is lost or doubled.
            log.warning("commit failed after rebalance, batch will be redelivered: %r", exc)
            return
        for tp, msgs in batches.items():
            CONSUMED.labels(tp.topic, self._group_id).inc(len(msgs))
            highwater = consumer.highwater(tp)
            if highwater is not None:
                CONSUMER_LAG.labels(self._group_id).observe(max(0, highwater - offsets[tp]))
        BATCH_SECONDS.labels(self._group_id).observe(time.perf_counter() - started)

    def _decode(
        self, batches: Mapping[TopicPartition, list[ConsumerRecord]]
    ) -> tuple[list[Record[Any]], list[DeadLetter]]:
        records: list[Record[Any]] = []
        letters: list[DeadLetter] = []
        for tp, messages in batches.items():
            decode = self._decoders[tp.topic]
            for msg in messages:
                try:
                    value = decode(msg.value)
                except Exception as exc:  # any decoder error means: this payload is bad
                    letters.append(
                        DeadLetter(
                            tp.topic,
                            tp.partition,
                            msg.offset,
                            msg.key,
                            msg.value,
                            f"undecodable: {exc}",
                        )
                    )
                    continue
                records.append(
                    Record(
                        tp.topic, tp.partition, msg.offset, msg.key, value, msg.timestamp, msg.value
                    )
                )
        return records, letters

    async def _apply(self, records: list[Record[Any]]) -> list[DeadLetter]:
        """Apply the batch; fall back to one record at a time; return what failed."""
        try:
            await self._apply_with_retry(records)
            return []
        except _BatchAbandoned:
            raise
        except Exception as exc:
            if len(records) == 1:
                record = records[0]
                log.error(
                    "record %s[%d]@%d failed: %r",
                    record.topic,
                    record.partition,
                    record.offset,
                    exc,
                )
                return [_letter_of(record, f"handler failed: {exc!r}")]
            log.warning("batch of %d failed (%r); applying one by one", len(records), exc)
        letters: list[DeadLetter] = []
        for record in records:
            letters.extend(await self._apply([record]))
        return letters

    async def _apply_with_retry(self, records: list[Record[Any]]) -> None:
        """The handler, retried with backoff while it fails transiently; a shutdown
        during the retries abandons the batch (uncommitted, it is redelivered)."""
        self._retry_batch = self._retry_batch or retrying(
            what=f"batch of {self._group_id}",
            retry_on=self._is_transient,
            first_s=0.1,
            max_s=self._max_retry_delay_s,
            stopping=self._stopping,
            logger=log,
        )
        try:
            await self._retry_batch(self._handler, records)
        except Exception as exc:
            if self._stopping.is_set() and self._is_transient(exc):
                raise _BatchAbandoned from exc
            raise


def _is_kafka_error(exc: BaseException) -> bool:
    return isinstance(exc, KafkaError)


def _letter_of(record: Record[Any], reason: str) -> DeadLetter:
    # The payload as consumed, so the dead letter can be replayed as it was.
    raw = record.raw
    if raw is None:
        value = record.value
        raw = value.to_bytes() if isinstance(value, EventModel) else repr(value).encode()
    return DeadLetter(record.topic, record.partition, record.offset, record.key, raw, reason)
