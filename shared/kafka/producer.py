"""A publisher that batches for every caller of the process.

Many coroutines each awaiting ``AIOKafkaProducer.send()`` give multi-second tails
under load (aiokafka issue 528), and concurrent ``send_batch`` callers fail early
in aiokafka 0.14.0 (its ``add_batch`` timeout arithmetic). So one task owns
batching: callers put messages on a queue and await a future that resolves when
the broker has acknowledged (``acks=all``) the batch holding their message.

The queue holds one entry per ``publish_many`` call, with one future for all of
its messages, rather than an entry and a future per message: at ingest's rates
(a 100-event batch request is one call) the per-message futures, queue entries
and ``gather`` callbacks cost more than building the Kafka batch did. Partition
choice is Kafka's murmur2 (Java-compatible), remembered per key for the keys
seen recently, as the pure-Python hash costs microseconds a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
)
from aiokafka.partitioner import murmur2

from shared.errors import BrokerUnavailable, PublishError
from shared.kafka.metrics import PUBLISH_BATCH_SIZE, PUBLISH_FAILED, PUBLISHED
from shared.retry import retrying
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

_UNAVAILABLE = (
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
)
_MAX_ITEMS_PER_CYCLE = 20_000
#: keys whose murmur2 hash is remembered; the cache is emptied when it is full
_HASH_CACHE_SIZE = 65_536

Headers = Sequence[tuple[str, bytes]]
#: shared by the records that have none (the batch builder only reads it)
_NO_HEADERS: list[tuple[str, bytes]] = []


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Delivered:
    topic: str
    partition: int
    offset: int


@dataclass(slots=True, eq=False)
class _Pending:
    """One ``publish_many`` call: its messages and the future its caller awaits.

    The future gets every message's :class:`Delivered` once the last one is
    acknowledged, or the first failure. Once it is done (answered, or given up
    by its caller) nothing more of it is sent or resolved.
    """

    messages: list[Message]
    future: asyncio.Future[list[Delivered]] = field(repr=False)
    delivered: list[Delivered | None] = field(repr=False)
    remaining: int

    def deliver(self, index: int, delivered: Delivered) -> None:
        self.delivered[index] = delivered
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():
            self.future.set_result(self.delivered)  # type: ignore[arg-type]

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


#: a message of a call, by its position in the call
_Item = tuple[_Pending, int]


class EventPublisher:
    """At-least-once publishing with ``acks=all`` through one batching task.

    ``publish`` returns only once the broker acknowledged the message, and raises
    :class:`BrokerUnavailable` when it could not within ``publish_timeout_s``; a
    message whose caller gave up may still be stored (consumers dedupe by key).
    ``start`` does not fail when the broker is down: it keeps connecting in the
    background and ``publish`` raises ``BrokerUnavailable`` meanwhile.
    """

    def __init__(self, settings: KafkaSettings, *, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._hashes: dict[bytes, int] = {}
        self._connected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._connect_forever(), name="publisher-connect"))
        self._tasks.append(asyncio.create_task(self._flush_forever(), name="publisher-flush"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout=5)

    async def stop(self) -> None:
        """Send what is queued (while the broker answers), then close."""
        self._closing = True
        if self._connected.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout=self._settings.publish_timeout_s)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_queued(PublishError("publisher stopped"))
        if self._producer is not None:
            with contextlib.suppress(KafkaError):
                await self._producer.stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def check_ready(self, topics: Iterable[str] = ()) -> None:
        """Raise unless the broker answers a metadata request now and has ``topics``.

        A broker that restarted without its topics (the embedded one is in memory)
        answers, yet publishing would auto-create them with its default count.
        """
        if self._producer is None or not self._connected.is_set():
            raise BrokerUnavailable("not connected to the broker yet")
        try:
            cluster = await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout=3)
        except (TimeoutError, *_UNAVAILABLE) as exc:
            raise BrokerUnavailable(f"broker did not answer: {exc!r}") from exc
        missing = sorted(set(topics) - cluster.topics())
        if missing:
            raise BrokerUnavailable(
                f"topics missing on the broker: {', '.join(missing)} (run `tenure topics`)"
            )

    # publishing --------------------------------------------------------------

    async def publish(self, message: Message) -> Delivered:
        (delivered,) = await self.publish_many((message,))
        return delivered

    async def publish_many(self, messages: Iterable[Message]) -> list[Delivered]:
        """Publish all messages; raise if any of them was not acknowledged in time."""
        if self._closing:
            raise PublishError("publisher is stopping")
        if not self._connected.is_set():
            raise BrokerUnavailable("not connected to the broker")
        batch = list(messages)
        if not batch:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Delivered]] = loop.create_future()
        self._queue.put_nowait(_Pending(batch, future, [None] * len(batch), len(batch)))
        # A timer that fails the future, rather than asyncio.wait_for (a tenth of a
        # single-event request's CPU). Once the future is done, by this timer or by
        # the caller's cancellation, what is still queued of the call is not sent.
        timeout = self._settings.publish_timeout_s
        timer = loop.call_later(timeout, _expire, future, timeout)
        try:
            return await future
        finally:
            timer.cancel()

    # the owner task ----------------------------------------------------------

    async def _connect_forever(self) -> None:
        """Connect, retrying with backoff while the broker is away (``stop`` cancels)."""
        self._producer = await retrying(
            what=f"connecting to the broker at {self._settings.bootstrap_servers}",
            retry_on=lambda exc: isinstance(exc, KafkaError),
            first_s=0.2,
            max_s=5.0,
            logger=log,
        )(self._connect)
        self._connected.set()
        log.info("connected to broker at %s", self._settings.bootstrap_servers)

    async def _connect(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.bootstrap_servers,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=self._settings.enable_idempotence,
            # Default 0: the owner task hands over complete batches (nothing else
            # appends to them), so lingering would only delay every publish. Batching
            # comes from the queue filling while the previous request is in flight.
            linger_ms=self._settings.linger_ms,
            max_batch_size=self._settings.max_batch_bytes,
            max_request_size=self._settings.max_batch_bytes,
            request_timeout_ms=self._settings.request_timeout_ms,
        )
        try:
            await producer.start()
        except KafkaError:
            with contextlib.suppress(KafkaError):
                await producer.stop()
            raise
        return producer

    async def _flush_forever(self) -> None:
        await self._connected.wait()
        while True:
            first = await self._queue.get()
            pending = [first]
            count = len(first.messages)
            while count < _MAX_ITEMS_PER_CYCLE and not self._queue.empty():
                call = self._queue.get_nowait()
                pending.append(call)
                count += len(call.messages)
            try:
                await self._send_cycle(pending)
            except Exception as exc:  # never let the owner task die
                log.exception("publish cycle failed")
                _fail(pending, exc)
            finally:
                for _ in pending:
                    self._queue.task_done()

    async def _send_cycle(self, pending: list[_Pending]) -> None:
        assert self._producer is not None
        by_partition: dict[tuple[str, int], list[_Item]] = defaultdict(list)
        partitions: dict[str, list[int]] = {}
        unavailable: dict[str, BrokerUnavailable] = {}
        for call in pending:
            if call.future.done():  # its caller gave up: do not send what was answered 503
                continue
            for index, message in enumerate(call.messages):
                topic = message.topic
                if topic not in partitions:
                    try:
                        partitions[topic] = sorted(await self._producer.partitions_for(topic))
                    except _UNAVAILABLE as exc:
                        unavailable[topic] = BrokerUnavailable(f"no metadata for {topic}: {exc!r}")
                        partitions[topic] = []
                if not partitions[topic]:
                    call.fail(unavailable.get(topic) or BrokerUnavailable(f"no partition: {topic}"))
                    break
                partition = self._partition(message.key, partitions[topic])
                by_partition[(topic, partition)].append((call, index))
        await asyncio.gather(
            *(
                self._send_partition(topic, partition, items)
                for (topic, partition), items in by_partition.items()
            )
        )

    def _partition(self, key: bytes | None, partitions: list[int]) -> int:
        """What aiokafka's (and Java's) DefaultPartitioner picks, without rehashing known keys."""
        if key is None:
            return random.choice(partitions)
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= _HASH_CACHE_SIZE:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return partitions[hashed % len(partitions)]

    async def _send_partition(self, topic: str, partition: int, items: list[_Item]) -> None:
        """Send items in order, as few batches as fit; resolve each item on ack."""
        assert self._producer is not None
        start = 0
        while start < len(items):
            batch = self._producer.create_batch()
            end = start
            while end < len(items):
                call, index = items[end]
                message = call.messages[index]
                if (
                    batch.append(
                        key=message.key,
                        value=message.value,
                        timestamp=None,
                        headers=list(message.headers) if message.headers else _NO_HEADERS,
                    )
                    is None
                ):
                    break
                end += 1
            # The batch builder takes a first record of any size, so an oversized
            # message shows up as a one-record batch larger than the limit.
            if end == start or (end == start + 1 and batch.size() > self._settings.max_batch_bytes):
                items[start][0].fail(PublishError("message larger than max_batch_bytes"))
                start += 1
                continue
            chunk = items[start:end]
            PUBLISH_BATCH_SIZE.observe(len(chunk))
            try:
                delivery = await self._producer.send_batch(batch, topic, partition=partition)
            except KafkaError as exc:
                _fail((call for call, _ in chunk), _as_publish_error(exc))
            else:
                delivery.add_done_callback(_resolver(topic, partition, chunk))
            start = end

    def _fail_queued(self, exc: Exception) -> None:
        while not self._queue.empty():
            call = self._queue.get_nowait()
            call.fail(exc)
            self._queue.task_done()


def _resolver(topic: str, partition: int, chunk: list[_Item]):  # type: ignore[no-untyped-def]
    def resolve(delivery: asyncio.Future) -> None:  # type: ignore[type-arg]
        if delivery.cancelled():
            _fail((call for call, _ in chunk), PublishError("delivery cancelled"))
            return
        exc = delivery.exception()
        if exc is not None:
            PUBLISH_FAILED.labels(topic).inc(len(chunk))
            _fail((call for call, _ in chunk), _as_publish_error(exc))
            return
        base = delivery.result().offset
        PUBLISHED.labels(topic).inc(len(chunk))
        for position, (call, index) in enumerate(chunk):
            if not call.future.done():
                call.deliver(index, Delivered(topic, partition, base + position))

    return resolve


def _expire(future: asyncio.Future[list[Delivered]], timeout: float) -> None:
    if not future.done():
        future.set_exception(BrokerUnavailable(f"broker did not acknowledge within {timeout}s"))


def _as_publish_error(exc: BaseException) -> PublishError:
    if isinstance(exc, _UNAVAILABLE):
        return BrokerUnavailable(repr(exc))
    return PublishError(repr(exc))


def _fail(calls: Iterable[_Pending], exc: BaseException) -> None:
    for call in calls:
        call.fail(exc)
