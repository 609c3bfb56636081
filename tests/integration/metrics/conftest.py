"""A metrics service on a broker and database of its own, with a clock the tests set."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import pytest
import uvicorn

from services.metrics.app import create_app
from services.metrics.runtime import Runtime
from services.metrics.settings import MetricsGroup, MetricsSettings
from shared.auth import hash_token
from shared.db.migrations import upgrade
from shared.events import ALL_TOPICS, experiment_decisions
from shared.kafka.producer import EventPublisher, Message
from shared.kafka.topics import ensure_topics, with_dead_letters
from shared.settings import DatabaseSettings, KafkaSettings
from tenure.embedded import EmbeddedBroker, free_port
from tenure.services import SERVICES
from tests.conftest import NewDatabase
from tests.support.clock import FakeClock
from tests.support.kafka import TopicTail

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class Keyed(Protocol):
    """A message model with its partition key (every topic's model has one)."""

    @property
    def key(self) -> bytes: ...

    def to_bytes(self) -> bytes: ...


@dataclass
class Stack:
    client: httpx.AsyncClient
    clock: FakeClock
    publisher: EventPublisher
    decisions: TopicTail
    runtime: Runtime
    database_url: str
    app: Any

    async def send(self, topic: str, *payloads: Keyed) -> None:
        await self.publisher.publish_many(Message(topic, p.key, p.to_bytes()) for p in payloads)

    async def get(self, path: str, **params: Any) -> Any:
        answer = await self.client.get(path, params=params, headers=ADMIN)
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def until(self, path: str, condition: Callable[[Any], bool], **params: Any) -> Any:
        """The answer of ``path`` once ``condition`` holds (the consumer is asynchronous);
        ``within_s`` (60) bounds the wait, the other keywords are the query."""
        within_s = float(params.pop("within_s", 60))
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            body = await self.get(path, **params)
            if condition(body):
                return body
            if asyncio.get_running_loop().time() > deadline:
                return body  # the caller's assertion says what differs
            await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(
        port=free_port(), log_path=tmp_path_factory.mktemp("broker") / "broker.log"
    )
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
async def stack(module_broker: EmbeddedBroker, new_database: NewDatabase) -> AsyncIterator[Stack]:
    kafka = KafkaSettings(
        bootstrap_servers=module_broker.bootstrap_servers,
        partitions=3,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
    )
    await ensure_topics(kafka, with_dead_letters(ALL_TOPICS))
    url = await new_database()
    await asyncio.to_thread(
        upgrade, script_location=SERVICES["metrics"].migrations_dir, database_url=url
    )
    settings = MetricsSettings(
        kafka=kafka,
        database=DatabaseSettings(url=url),
        metrics=MetricsGroup(
            admin_token_hashes=hash_token(ADMIN_TOKEN),
            consumer_group=f"metrics-{uuid.uuid4().hex[:8]}",
            evaluate_interval_s=0,
            attribution_window_hours=72,
        ),
    )
    clock = FakeClock(NOW)
    app = create_app(settings, clock=clock)
    publisher = EventPublisher(kafka, client_id="test-sender")
    await publisher.start()
    decisions = await TopicTail(module_broker.bootstrap_servers, experiment_decisions.TOPIC).start()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as client:
            runtime = app.state.runtime
            await runtime.runner.started.wait()
            yield Stack(client, clock, publisher, decisions, runtime, url, app)
    await decisions.stop()
    await publisher.stop()


@pytest.fixture(scope="module")
async def served(stack: Stack) -> AsyncIterator[int]:
    """The stack's metrics app on a loopback port (its lifespan already runs)."""
    port = free_port()
    app = stack.app
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to await
        await asyncio.sleep(0.05)
    yield port
    server.should_exit = True
    await task
