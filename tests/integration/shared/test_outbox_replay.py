"""What the outbox relay published is kept for a window, pruned after it, and replayed
on ``POST /v1/ops/replay?since=`` — against real PostgreSQL and the real broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import Table, func, select

from shared.auth import TokenDigests, hash_token
from shared.db.engine import create_engine, service_metadata
from shared.db.outbox import OutboxRelay, enqueue, outbox_relayed_table, outbox_table
from shared.http import replay
from shared.http.app import create_service_app
from shared.kafka.producer import EventPublisher, Message
from shared.kafka.topics import ensure_topics
from shared.runtime import ServiceRuntime
from shared.settings import DatabaseSettings, KafkaSettings
from tests.conftest import NewDatabase
from tests.support.clock import FakeClock
from tests.support.kafka import TopicTail

TOKEN = "replay-test-admin-token"


@dataclass
class Kept:
    relay: OutboxRelay
    outbox: Table
    relayed: Table
    clock: FakeClock

    async def add(self, messages: list[Message]) -> None:
        async with self.relay._engine.begin() as conn:
            await enqueue(session=conn, outbox=self.outbox, messages=messages)

    async def kept(self) -> int:
        """Messages kept in ``outbox_relayed``."""
        async with self.relay._engine.connect() as conn:
            return int(await conn.scalar(select(func.sum(self.relayed.c.messages))) or 0)


@pytest.fixture
async def topic(kafka_settings: KafkaSettings) -> str:
    name = f"replay-{uuid.uuid4().hex[:10]}"
    await ensure_topics(kafka_settings, [name])
    return name


@pytest.fixture
async def kept(new_database: NewDatabase, kafka_settings: KafkaSettings) -> AsyncIterator[Kept]:
    engine = create_engine(DatabaseSettings(url=await new_database()))
    metadata = service_metadata("t_replay")
    outbox, relayed = outbox_table(metadata), outbox_relayed_table(metadata)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("CREATE SCHEMA t_replay")
        await conn.run_sync(metadata.create_all)
    publisher = EventPublisher(kafka_settings, client_id="test-replay")
    await publisher.start()
    clock = FakeClock()
    relay = OutboxRelay(
        engine=engine,
        outbox=outbox,
        publisher=publisher,
        relayed=relayed,
        keep_for=timedelta(hours=1),
        clock=clock,
        batch_size=5,
    )
    try:
        yield Kept(relay, outbox, relayed, clock)
    finally:
        await publisher.stop()
        await engine.dispose()


def values(records: list[object]) -> list[bytes]:
    return [r.value for r in sorted(records, key=lambda r: r.offset)]  # type: ignore[attr-defined]


async def test_relayed_rows_are_kept_for_the_window_then_pruned(kept: Kept, topic: str) -> None:
    await kept.add([Message(topic, b"k", f"a{i}".encode()) for i in range(3)])
    assert await kept.relay.relay_once() == 3
    kept.clock.advance(minutes=40)
    await kept.add([Message(topic, b"k", f"b{i}".encode()) for i in range(2)])
    assert await kept.relay.relay_once() == 2
    assert await kept.kept() == 5

    kept.clock.advance(minutes=30)  # the first pass is 70 minutes old, the second 30
    assert await kept.relay.prune() == 1  # one row: the pack of three
    assert await kept.kept() == 2
    kept.clock.advance(minutes=31)
    assert await kept.relay.prune() == 1
    assert await kept.kept() == 0


async def test_replay_publishes_again_exactly_what_was_relayed_since_in_order(
    kept: Kept, topic: str, kafka_settings: KafkaSettings
) -> None:
    await kept.add([Message(topic, b"k", f"a{i}".encode()) for i in range(3)])
    assert await kept.relay.relay_once() == 3
    since = kept.clock.advance(minutes=5)
    await kept.add([Message(topic, b"k", f"b{i}".encode()) for i in range(4)])
    async with kept.relay._engine.begin() as conn:  # a row written by SQL, one message
        await conn.execute(kept.outbox.insert().values(topic=topic, key=b"k", value=b"c"))
    assert await kept.relay.relay_once() == 5  # the pack of four and the single row
    kept.clock.advance(minutes=1)
    await kept.add([Message(topic, b"k", b"d")])  # queued after, not relayed yet

    assert await kept.relay.replay(since) == {topic: 5}
    assert await kept.relay.replay(since) == {}  # moved back: nothing kept since then now
    assert [await kept.relay.relay_once() for _ in range(3)] == [5, 1, 0]

    tail = await TopicTail(kafka_settings.bootstrap_servers, topic).start()
    try:
        records = await tail.wait_for_count(lambda _: True, 14)
    finally:
        await tail.stop()
    first = [b"a0", b"a1", b"a2", b"b0", b"b1", b"b2", b"b3", b"c"]
    # the replayed rows go out under their first ids: before d, queued after them
    assert values(records) == first + first[3:] + [b"d"]
    assert await kept.kept() == 9  # each row kept once


async def test_replay_route_asks_for_an_admin_token_and_a_since_within_the_window(
    kept: Kept, topic: str
) -> None:
    await kept.add([Message(topic, b"k", b"x")])
    assert await kept.relay.relay_once() == 1
    app = create_service_app(title="t", description="t", version="1", lifespan=None)
    app.include_router(replay.router)
    app.state.clock = kept.clock
    app.state.admin_tokens = TokenDigests([hash_token(TOKEN)])
    service = ServiceRuntime("t", engine=kept.relay._engine, relay=kept.relay)
    app.state.runtime = SimpleNamespace(service=service)
    now = kept.clock()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://t", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:

        async def post(since: str, **kwargs: object) -> httpx.Response:
            return await client.post("/v1/ops/replay", params={"since": since}, **kwargs)  # type: ignore[arg-type]

        unauthorized = await post(now.isoformat(), headers={"Authorization": "Bearer nope"})
        assert unauthorized.status_code == 401
        assert unauthorized.headers["content-type"] == "application/problem+json"

        future = await post((now + timedelta(seconds=1)).isoformat())
        assert future.status_code == 422
        assert "future" in future.json()["detail"]

        old = await post((now - timedelta(hours=1, seconds=1)).isoformat())
        assert old.status_code == 422
        assert old.json()["type"] == "urn:tenure:problem:older_than_window"
        assert old.json()["kept_since"] == (now - timedelta(hours=1)).isoformat()
        assert (await post("1234")).status_code == 422  # not ISO text

        # no offset: UTC
        ok = await post((now - timedelta(minutes=1)).replace(tzinfo=None).isoformat())
        assert ok.status_code == 200
        assert ok.json()["messages"] == {topic: 1}
        assert ok.json()["total"] == 1
