"""Transactional outbox: write state and the events it implies in one transaction.

A service inserts outbox rows in the same transaction as its state change
(:func:`enqueue`); :class:`OutboxRelay` publishes them to Kafka and deletes them
once the broker acknowledged. Delivery is at-least-once; consumers dedupe.
:func:`enqueue` writes the consecutive messages of one topic as one row, a pack
(:mod:`shared.db.outbox_pack`); a row written by SQL (:func:`insert_messages_sql`)
holds one message.

Ordering: a transaction advisory lock per outbox lets one relay at a time publish
a given outbox, in ``id`` order — two replicas can never reorder one customer's
events. The relay deletes a batch of the oldest rows (``DELETE … RETURNING``),
publishes them and commits only after the broker acknowledged them; a failure
rolls the deletion back. (Selecting the rows ``FOR UPDATE`` and deleting them
after wrote every row twice: that select was the segmenter's second most costly
statement.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from shared.clock import Clock, utc_now
from shared.db.engine import driver_connection
from shared.db.locks import lock_name, try_xact_lock, xact_lock
from shared.db.outbox_pack import PACK_MESSAGES, pack, unpack
from shared.kafka.producer import EventPublisher, Headers, Message
from shared.retry import retrying
from shared.stopping import StoppableLoop

log = logging.getLogger(__name__)


def outbox_table(metadata: MetaData) -> Table:
    """The ``outbox`` table in the metadata's schema."""
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("topic", Text, nullable=False),
        Column("key", LargeBinary, nullable=True),
        Column("value", LargeBinary, nullable=False),
        Column("headers", JSONB, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        #: ``value`` holds a pack of messages of ``topic`` (see :mod:`outbox_pack`)
        Column("packed", Boolean, nullable=False, server_default=false()),
        #: how many messages the row holds
        Column("messages", Integer, nullable=False, server_default="1"),
    )


def outbox_relayed_table(metadata: MetaData) -> Table:
    """The ``outbox_relayed`` table: the outbox rows the relay published, with their
    outbox ``id``, kept for the replay window (:meth:`OutboxRelay.replay`)."""
    return Table(
        "outbox_relayed",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("topic", Text, nullable=False),
        Column("key", LargeBinary, nullable=True),
        Column("value", LargeBinary, nullable=False),
        Column("headers", JSONB, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("packed", Boolean, nullable=False),
        Column("messages", Integer, nullable=False),
        #: when the relay took the row (by its clock); the prune and the replay read it
        Column("relayed_at", DateTime(timezone=True), nullable=False, index=True),
    )


async def enqueue(
    *, session: AsyncSession | AsyncConnection, outbox: Table, messages: Sequence[Message]
) -> None:
    """Insert messages into the outbox, in order, within the caller's transaction.

    Consecutive messages of one topic go in packs of up to :data:`PACK_MESSAGES`, one
    row each (see :mod:`outbox_pack`), in one statement: a consumer batch that emits
    thousands of messages writes a few rows in one round trip.
    """
    if not messages:
        return
    conn = session if isinstance(session, AsyncConnection) else await session.connection()
    packs = []
    for topic, run in itertools.groupby(messages, key=lambda m: m.topic):
        same_topic = list(run)
        for start in range(0, len(same_topic), PACK_MESSAGES):
            packs.append((topic, same_topic[start : start + PACK_MESSAGES]))
    driver = await driver_connection(conn)
    await driver.execute(
        f"INSERT INTO {outbox.fullname} (topic, value, packed, messages) "
        "SELECT topic, value, true, messages "
        "FROM unnest($1::text[], $2::bytea[], $3::int[]) "
        "WITH ORDINALITY AS m(topic, value, messages, position) ORDER BY position",
        [topic for topic, _ in packs],
        [pack(group) for _, group in packs],
        [len(group) for _, group in packs],
    )


def insert_messages_sql(outbox: Table, *, topic: str, key: str, value: str, source: str) -> str:
    """The ``INSERT`` that queues one message per row of ``source``, for messages made
    set-based in SQL (a sweep's or a backfill's membership changes).

    ``topic``, ``key`` and ``value`` are SQL expressions (``text``, ``bytea`` or NULL,
    ``bytea``) over ``source``, a ``FROM`` clause with its conditions and its
    ``ORDER BY`` (the messages' order). Each row holds one message, not a pack; the
    relay publishes them in ``id`` order among the packs. Append ``RETURNING`` to use
    it in a ``WITH``.
    """
    return (
        f"INSERT INTO {outbox.fullname} (topic, key, value) "
        f"SELECT {topic}, {key}, {value} FROM {source}"
    )


def _headers(text_: str | None) -> Headers:
    if text_ is None:
        return ()
    return tuple((k, v.encode("latin-1")) for k, v in orjson.loads(text_))


#: how often the relay forgets the relayed rows past its window, at most
PRUNE_INTERVAL_S = 60.0


class OutboxRelay(StoppableLoop):
    """Publishes an outbox table to Kafka until :meth:`signal_shutdown`.

    Each pass takes the oldest rows while the messages before them number fewer
    than ``batch_size`` (a pack goes whole, so a pass may publish up to
    ``batch_size + PACK_MESSAGES - 1``). Idle, it waits for :meth:`notify` (called by
    whoever commits rows, after the commit) and otherwise looks every ``idle_poll_s``
    (for rows written by another process).

    With ``relayed`` (and ``keep_for`` above zero) the rows it publishes move there,
    stamped with ``clock()``, for :meth:`replay`; :meth:`prune` (a periodic job the
    :class:`~shared.runtime.ServiceRuntime` runs) forgets those older than ``keep_for``.
    """

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        outbox: Table,
        publisher: EventPublisher,
        relayed: Table | None = None,
        keep_for: timedelta = timedelta(0),
        clock: Clock = utc_now,
        batch_size: int = 2_000,
        idle_poll_s: float = 5.0,
    ) -> None:
        self._engine = engine
        self._outbox = outbox
        self._publisher = publisher
        self._relayed = relayed if keep_for > timedelta(0) else None
        self._keep_for = keep_for
        self._clock = clock
        self._batch_size = batch_size
        self._idle_poll_s = idle_poll_s
        super().__init__()
        self._wakeup = asyncio.Event()
        self._lock_name = lock_name("outbox", item=outbox.fullname)
        self._take = self._take_sql()

    @property
    def relayed_table(self) -> Table | None:
        """Where relayed rows are kept for a replay (None: nowhere, nothing to replay)."""
        return self._relayed

    @property
    def keep_for(self) -> timedelta:
        return self._keep_for

    @property
    def prune_interval_s(self) -> float:
        """How often :meth:`prune` runs: a tenth of the window, at most a minute."""
        return min(PRUNE_INTERVAL_S, self._keep_for.total_seconds() / 10)

    def kept_since(self) -> datetime:
        """The oldest ``relayed_at`` a replay may ask for now."""
        return self._clock() - self._keep_for

    def signal_shutdown(self) -> None:
        super().signal_shutdown()
        self._wakeup.set()

    def notify(self) -> None:
        """Tell the relay that rows were just committed, so it need not wait to poll."""
        self._wakeup.set()

    async def run(self) -> None:
        """Relay until shutdown; a failed pass (broker or database away) is retried with
        backoff (:func:`shared.retry.retrying`), the rows staying in the outbox."""
        retry = retrying(
            what=f"relaying {self._outbox.fullname}",
            first_s=0.1,
            max_s=5.0,
            stopping=self._stopping,
            logger=log,
        )
        while not self._stopping.is_set():
            try:
                relayed: int = await retry(self.relay_once)
            except Exception:
                return  # only once shutdown stopped the retries
            if relayed < self._batch_size:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=self._idle_poll_s)

    def _take_sql(self) -> str:
        """The statement deleting the next batch (``$1``: batch size), moving it to
        ``relayed`` stamped ``$2`` when rows are kept, and returning it."""
        outbox = self._outbox.fullname
        # the oldest rows while they hold fewer than batch_size messages, and one more
        delete = (
            f"DELETE FROM {outbox} WHERE id IN ("
            "SELECT id FROM ("
            "SELECT id, messages, sum(messages) OVER (ORDER BY id) AS upto "
            f"FROM {outbox} ORDER BY id LIMIT $1"
            ") AS oldest WHERE upto - messages < $1"
            ")"
        )
        if self._relayed is None:
            return f"{delete} RETURNING id, topic, key, value, headers::text, packed"
        columns = "id, topic, key, value, headers, created_at, packed, messages"
        return (
            f"WITH moved AS ({delete} RETURNING {columns}) "
            f"INSERT INTO {self._relayed.fullname} ({columns}, relayed_at) "
            f"SELECT {columns}, $2::timestamptz FROM moved "
            "RETURNING id, topic, key, value, headers::text, packed"
        )

    async def relay_once(self) -> int:
        """Publish and delete (or move) up to one batch of rows; return how many."""
        async with self._engine.begin() as conn:
            if not await try_xact_lock(conn, self._lock_name):
                return 0
            driver = await driver_connection(conn)
            if self._relayed is None:
                rows = await driver.fetch(self._take, self._batch_size)
            else:
                rows = await driver.fetch(self._take, self._batch_size, self._clock())
            if not rows:
                return 0
            rows.sort(key=lambda row: row[0])
            messages: list[Message] = []
            for _, topic, key, value, headers, packed in rows:
                if packed:
                    messages += unpack(topic, value)
                else:
                    messages.append(Message(topic, key, value, _headers(headers)))
            await self._publisher.publish_many(messages)
        return len(messages)

    async def prune(self) -> int:
        """Forget the relayed rows older than the window; return how many rows."""
        if self._relayed is None:
            return 0
        async with self._engine.begin() as conn:
            driver = await driver_connection(conn)
            status = await driver.execute(
                f"DELETE FROM {self._relayed.fullname} WHERE relayed_at < $1", self.kept_since()
            )
        return int(status.rsplit(" ", 1)[-1])

    async def replay(self, since: datetime) -> dict[str, int]:
        """Move every row relayed at or after ``since`` back into the outbox, under its
        first ``id``, and wake the relay; return the messages per topic.

        Back under their ids, the rows go out again before anything queued after them
        and in their first order, so one customer's messages keep their order; moved
        (not copied), a row is kept once and a second replay sends it once more, not
        twice. The relay's lock is held meanwhile: no pass is publishing newer rows."""
        if self._relayed is None:
            return {}
        columns = "id, topic, key, value, headers, created_at, packed, messages"
        async with self._engine.begin() as conn:
            await xact_lock(conn, self._lock_name)
            driver = await driver_connection(conn)
            rows = await driver.fetch(
                f"WITH moved AS ("
                f"DELETE FROM {self._relayed.fullname} WHERE relayed_at >= $1 "
                f"RETURNING {columns}), "
                f"queued AS ("
                f"INSERT INTO {self._outbox.fullname} ({columns}) OVERRIDING SYSTEM VALUE "
                f"SELECT {columns} FROM moved ORDER BY id "
                "RETURNING topic, messages) "
                "SELECT topic, sum(messages)::bigint FROM queued GROUP BY topic ORDER BY topic",
                since,
            )
        self.notify()
        return {topic: int(count) for topic, count in rows}
