"""A journey service on a broker and database of its own, with a clock the tests move."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import TopicPartition

from services.journey.app import create_app
from services.journey.runtime import Runtime
from services.journey.settings import JourneyGroup, JourneySettings
from shared.auth import hash_token
from shared.db.migrations import upgrade
from shared.events import ALL_TOPICS, dispatch_requests, journey_runs
from shared.events import customer_events as customer_events_topic
from shared.events.base import EventModel
from shared.events.customer_events import CustomerEvent, EventType
from shared.kafka.producer import Delivered, EventPublisher, Message
from shared.kafka.topics import ensure_topics, with_dead_letters
from shared.settings import DatabaseSettings, KafkaSettings
from tenure.embedded import EmbeddedBroker, free_port
from tenure.services import SERVICES
from tests.conftest import NewDatabase
from tests.support.clock import FakeClock
from tests.support.kafka import TopicTail

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def track(customer_id: str, event: str, at: datetime, **properties: Any) -> CustomerEvent:
    return CustomerEvent(
        type=EventType.TRACK,
        message_id=f"m-{uuid.uuid4().hex}",
        user_id=customer_id,
        event=event,
        properties=properties,
        timestamp=at,
        received_at=at,
    )


@dataclass
class Stack:
    client: httpx.AsyncClient
    clock: FakeClock
    publisher: EventPublisher
    runs: TopicTail
    requests: TopicTail
    traits: TopicTail
    runtime: Runtime
    url: str

    async def send(self, topic: str, *messages: EventModel) -> list[Delivered]:
        return await self.publisher.publish_many(
            Message(topic, m.key, m.to_bytes())  # type: ignore[attr-defined]
            for m in messages
        )

    async def track(self, customer_id: str, event: str, **properties: Any) -> CustomerEvent:
        sent = track(customer_id, event, self.clock.now, **properties)
        await self.send(customer_events_topic.TOPIC, sent)
        return sent

    async def consumed(self, delivered: list[Delivered], within_s: float = 15.0) -> None:
        """Wait until the service committed past these messages (applied them, or
        dropped them as read by no journey)."""
        consumer = self.runtime.runner.consumer
        assert consumer is not None
        for _ in range(int(within_s / 0.05)):
            committed = [
                await consumer.committed(TopicPartition(d.topic, d.partition)) for d in delivered
            ]
            if all(
                c is not None and c > d.offset for c, d in zip(committed, delivered, strict=True)
            ):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"not consumed in {within_s}s: {delivered}")

    async def journey(self, document: dict[str, Any], *, journey_id: str | None = None) -> str:
        """Create and publish a journey; return its id."""
        journey_id = journey_id or f"j-{uuid.uuid4().hex[:8]}"
        created = await self.client.post(
            "/v1/journeys",
            json={"id": journey_id, "name": journey_id, "definition": document},
            headers=ADMIN,
        )
        assert created.status_code == 201, created.text
        published = await self.client.post(f"/v1/journeys/{journey_id}/publish", headers=ADMIN)
        assert published.status_code == 200, published.text
        return journey_id

    async def run_events(
        self, customer_id: str, count: int, within_s: float = 15.0
    ) -> list[dict[str, Any]]:
        records = await self.runs.wait_for_count(
            lambda r: r.key == customer_id.encode(), count, within_s
        )
        return [orjson.loads(r.value) for r in records]

    def run_events_so_far(self, customer_id: str) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in self.runs.records if r.key == customer_id.encode()]

    async def dispatches(
        self, customer_id: str, count: int, within_s: float = 15.0
    ) -> list[dict[str, Any]]:
        """The customer's first ``count`` dispatches, each once: a dispatch requested
        again by the journey's watch (the clock moved past its wait for an outcome, and
        no dispatcher runs here) is the same ``dispatchId``."""
        for _ in range(int(within_s / 0.05)):
            found = self.dispatches_so_far(customer_id)
            if len(found) >= count:
                return found[:count]
            await asyncio.sleep(0.05)
        raise AssertionError(f"{len(found)} dispatches of {customer_id}, not {count}")

    def dispatches_so_far(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's dispatches so far, each once (see :meth:`dispatches`)."""
        distinct: dict[str, dict[str, Any]] = {}
        for r in self.requests.records:
            if r.key == customer_id.encode():
                value = orjson.loads(r.value)
                distinct.setdefault(value["dispatchId"], value)
        return list(distinct.values())

    async def customer_runs(self, customer_id: str, *, until: Any = None) -> list[dict[str, Any]]:
        """The customer's runs once ``until(runs)`` holds (the consumer is asynchronous)."""
        answer: Any = None
        for _ in range(300):
            answer = await self.client.get(f"/v1/customers/{customer_id}/runs", headers=ADMIN)
            runs: list[dict[str, Any]] = answer.json()["runs"]
            if until is None or until(runs):
                return runs
            await asyncio.sleep(0.05)
        raise AssertionError(f"runs of {customer_id} never satisfied the condition: {answer.text}")


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(
        port=free_port(), log_path=tmp_path_factory.mktemp("broker") / "broker.log"
    )
    broker.start()
    yield broker
    broker.stop()


def module_kafka(broker: EmbeddedBroker) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        partitions=3,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
    )


async def migrated_database(new_database: NewDatabase) -> str:
    url = await new_database()
    await asyncio.to_thread(
        upgrade, script_location=SERVICES["journey"].migrations_dir, database_url=url
    )
    return url


def journey_settings(kafka: KafkaSettings, url: str, **group: Any) -> JourneySettings:
    return JourneySettings(
        kafka=kafka,
        database=DatabaseSettings(url=url),
        journey=JourneyGroup(
            admin_token_hashes=hash_token(ADMIN_TOKEN),
            consumer_group=f"journey-{uuid.uuid4().hex[:8]}",
            sweep_interval_s=0.05,
            catalog_poll_s=0.1,
            watch_interval_s=0.1,
            **group,
        ),
    )


@pytest.fixture(scope="module")
async def stack(module_broker: EmbeddedBroker, new_database: NewDatabase) -> AsyncIterator[Stack]:
    kafka = module_kafka(module_broker)
    await ensure_topics(kafka, with_dead_letters(ALL_TOPICS))
    url = await migrated_database(new_database)
    clock = FakeClock(START)
    app = create_app(journey_settings(kafka, url), clock=clock)
    publisher = EventPublisher(kafka, client_id="test-sender")
    await publisher.start()
    servers = module_broker.bootstrap_servers
    runs = await TopicTail(servers, journey_runs.TOPIC).start()
    requests = await TopicTail(servers, dispatch_requests.TOPIC).start()
    traits = await TopicTail(servers, customer_events_topic.TOPIC).start()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://journey") as client:
            await app.state.runtime.runner.started.wait()
            yield Stack(client, clock, publisher, runs, requests, traits, app.state.runtime, url)
    for tail in (runs, requests, traits):
        await tail.stop()
    await publisher.stop()
