"""A segmenter on a broker and database of its own, with a clock the tests move."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.segmenter.app import create_app
from services.segmenter.runtime import Runtime
from services.segmenter.settings import SegmenterGroup, SegmenterSettings
from shared.auth import hash_token
from shared.db.migrations import upgrade
from shared.events import ALL_TOPICS, profiles, segment_changes
from shared.events.customer_events import TOPIC, CustomerEvent
from shared.kafka.producer import EventPublisher, Message
from shared.kafka.topics import ensure_topics, with_dead_letters
from shared.settings import DatabaseSettings, KafkaSettings
from tenure.embedded import EmbeddedBroker, free_port
from tenure.services import SERVICES
from tests.conftest import NewDatabase
from tests.integration.segmenter.replicas import Replicas, two_replicas
from tests.support.clock import FakeClock
from tests.support.kafka import TopicTail

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class Stack:
    client: httpx.AsyncClient
    clock: FakeClock
    publisher: EventPublisher
    changes: TopicTail
    profiles: TopicTail
    runtime: Runtime
    sent: list[CustomerEvent] = field(default_factory=list)

    async def send(self, *events: CustomerEvent) -> None:
        await self.publisher.publish_many(
            Message(TOPIC, e.key, e.model_dump_json(exclude_none=True).encode()) for e in events
        )
        self.sent.extend(events)

    async def profile(self, customer_id: str, *, until: Any = None) -> dict[str, Any]:
        """The profile, once ``until(profile)`` holds (the consumer is asynchronous)."""
        for _ in range(200):
            answer = await self.client.get(f"/v1/profiles/{customer_id}", headers=ADMIN)
            if answer.status_code == 200 and (until is None or until(answer.json())):
                return answer.json()  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"profile {customer_id} never satisfied the condition: "
            f"{answer.status_code} {answer.text}"
        )

    async def changes_of(self, customer_id: str, count: int) -> list[dict[str, Any]]:
        import orjson

        records = await self.changes.wait_for_count(lambda r: r.key == customer_id.encode(), count)
        return [orjson.loads(r.value) for r in records]

    def changes_so_far(self, customer_id: str) -> list[dict[str, Any]]:
        import orjson

        return [
            orjson.loads(r.value) for r in self.changes.records if r.key == customer_id.encode()
        ]


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
        upgrade, script_location=SERVICES["segmenter"].migrations_dir, database_url=url
    )
    settings = SegmenterSettings(
        kafka=kafka,
        database=DatabaseSettings(url=url),
        segmenter=SegmenterGroup(
            admin_token_hashes=hash_token(ADMIN_TOKEN),
            consumer_group=f"segmenter-{uuid.uuid4().hex[:8]}",
            sweep_interval_s=0.1,
            refit_interval_s=0,
        ),
    )
    clock = FakeClock(START)
    app = create_app(settings, clock=clock)
    publisher = EventPublisher(kafka, client_id="test-sender")
    await publisher.start()
    changes = await TopicTail(module_broker.bootstrap_servers, segment_changes.TOPIC).start()
    profile_tail = await TopicTail(module_broker.bootstrap_servers, profiles.TOPIC).start()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://segmenter") as client:
            await app.state.runtime.runner.started.wait()
            runtime = app.state.runtime
            yield Stack(client, clock, publisher, changes, profile_tail, runtime)
    await changes.stop()
    await profile_tail.stop()
    await publisher.stop()


@pytest.fixture
async def replicas(new_database: NewDatabase) -> AsyncIterator[Replicas]:
    """Two segmenter handlers on a database of their own (no broker): see
    :mod:`tests.integration.segmenter.replicas`."""
    async with two_replicas(await new_database()) as found:
        yield found
