"""Transactional outbox: write state and the events it implies in one transaction.

A service inserts outbox rows in the same transaction as its state change
(:func:`enqueue`); :class:`OutboxRelay` publishes them to Kafka and deletes them
once the broker acknowledged. Delivery is at-least-once; consumers dedupe.

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
import logging
import zlib
from collections.abc import Sequence

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    LargeBinary,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from shared.db.engine import driver_connection
from shared.errors import PublishError
from shared.kafka.producer import EventPublisher, Headers, Message
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
    )


async def enqueue(
    *, session: AsyncSession | AsyncConnection, outbox: Table, messages: Sequence[Message]
) -> None:
    """Insert messages into the outbox, in order, within the caller's transaction.

    One statement whatever the number of messages: the columns travel as arrays
    (``unnest``), so a consumer batch that emits thousands of messages costs one round
    trip and no per-row work in SQLAlchemy.
    """
    if not messages:
        return
    conn = session if isinstance(session, AsyncConnection) else await session.connection()
    driver = await driver_connection(conn)
    await driver.execute(
        f"INSERT INTO {outbox.fullname} (topic, key, value, headers) "
        "SELECT topic, key, value, headers "
        "FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::jsonb[]) "
        "WITH ORDINALITY AS m(topic, key, value, headers, position) ORDER BY position",
        [m.topic for m in messages],
        [m.key for m in messages],
        [m.value for m in messages],
        [_headers_json(m.headers) for m in messages],
    )


def _headers_json(headers: Headers) -> str | None:
    """Headers as a JSON list of ``[name, value]`` pairs (values as latin-1 text)."""
    if not headers:
        return None
    return orjson.dumps([[k, v.decode("latin-1")] for k, v in headers]).decode()


def _headers(text_: str | None) -> Headers:
    if text_ is None:
        return ()
    return tuple((k, v.encode("latin-1")) for k, v in orjson.loads(text_))


class OutboxRelay(StoppableLoop):
    """Publishes an outbox table to Kafka until :meth:`signal_shutdown`."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        outbox: Table,
        publisher: EventPublisher,
        batch_size: int = 2_000,
        idle_poll_s: float = 0.05,
    ) -> None:
        self._engine = engine
        self._outbox = outbox
        self._publisher = publisher
        self._batch_size = batch_size
        self._idle_poll_s = idle_poll_s
        super().__init__()
        self._wakeup = asyncio.Event()
        self._lock_key = zlib.crc32(f"tenure.outbox:{outbox.fullname}".encode())

    def signal_shutdown(self) -> None:
        super().signal_shutdown()
        self._wakeup.set()

    def notify(self) -> None:
        """Tell the relay that rows were just committed, so it need not wait to poll."""
        self._wakeup.set()

    async def run(self) -> None:
        delay = self._idle_poll_s
        while not self._stopping.is_set():
            try:
                relayed = await self.relay_once()
            except (PublishError, OSError) as exc:
                log.warning("outbox relay could not publish: %r", exc)
                relayed = 0
                delay = min(max(delay * 2, 0.1), 5.0)
            except Exception:
                log.exception("outbox relay failed")
                relayed = 0
                delay = min(max(delay * 2, 0.1), 5.0)
            else:
                delay = self._idle_poll_s
            if relayed < self._batch_size:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=delay)

    async def relay_once(self) -> int:
        """Publish and delete up to one batch of rows; return how many."""
        outbox = self._outbox
        async with self._engine.begin() as conn:
            got_lock = await conn.scalar(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": self._lock_key}
            )
            if not got_lock:
                return 0
            driver = await driver_connection(conn)
            rows = await driver.fetch(
                f"DELETE FROM {outbox.fullname} WHERE id IN ("
                f"SELECT id FROM {outbox.fullname} ORDER BY id LIMIT $1"
                ") RETURNING id, topic, key, value, headers::text",
                self._batch_size,
            )
            if not rows:
                return 0
            rows.sort(key=lambda row: row[0])
            await self._publisher.publish_many(
                Message(topic=topic, key=key, value=value, headers=_headers(headers))
                for _, topic, key, value, headers in rows
            )
        return len(rows)
