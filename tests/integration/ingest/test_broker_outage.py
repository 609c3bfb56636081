"""With the broker gone ingest answers 503 with Retry-After, never 2xx; when it is back, 200."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.ingest.app import create_app
from shared.events import ALL_TOPICS
from shared.events.customer_events import TOPIC
from shared.kafka.topics import ensure_topics, with_dead_letters
from shared.settings import KafkaSettings
from tenure.embedded import EmbeddedBroker, free_port
from tests.integration.ingest.conftest import AUTH, ingest_settings, problem_code
from tests.support.kafka import TopicTail
from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.slow


@pytest.fixture
async def proxied_broker(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedBroker, TcpProxy]]:
    """A broker of this test's own behind a proxy, so an outage disturbs no other test."""
    proxy_port = free_port()
    broker = EmbeddedBroker(
        port=free_port(), log_path=tmp_path / "broker.log", advertised_port=proxy_port
    )
    broker.start()
    proxy = await TcpProxy(listen_port=proxy_port, target_port=broker.port).start()
    try:
        yield broker, proxy
    finally:
        await proxy.stop()
        broker.stop()


async def _post(client: httpx.AsyncClient, message_id: str) -> httpx.Response:
    body = {"userId": "outage-user", "event": "During Outage", "messageId": message_id}
    return await client.post("/v1/track", json=body, headers=AUTH)


async def test_outage_is_503_and_recovery_is_200(
    proxied_broker: tuple[EmbeddedBroker, TcpProxy],
) -> None:
    broker, proxy = proxied_broker
    kafka = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        partitions=2,
        request_timeout_ms=2_000,
        publish_timeout_s=2.0,
    )
    await ensure_topics(kafka, with_dead_letters(ALL_TOPICS))
    app = create_app(ingest_settings(kafka))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            before = [f"before-{uuid.uuid4()}" for _ in range(5)]
            for message_id in before:
                assert (await _post(client, message_id)).status_code == 200
            assert (await client.get("/readyz")).status_code == 200

            await proxy.cut()
            during = [f"during-{uuid.uuid4()}" for _ in range(5)]
            answers = await asyncio.gather(*(_post(client, m) for m in during))
            for answer in answers:
                assert answer.status_code == 503, answer.text
                assert answer.headers["retry-after"] == "7"
                assert problem_code(answer) == "broker_unavailable"
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert "broker" in ready.json()["checks"]

            await proxy.restore()
            after = [f"after-{uuid.uuid4()}" for _ in range(5)]
            for message_id in after:
                answer = await _retry_until_ok(client, message_id)
                assert answer.status_code == 200, answer.text

    tail = await TopicTail(broker.bootstrap_servers, TOPIC).start()
    try:
        acknowledged = before + after
        found = await tail.wait_for_count(
            lambda r: b"before-" in r.value or b"after-" in r.value, len(acknowledged)
        )
        stored = [m for r in found for m in acknowledged if m.encode() in r.value]
        assert sorted(stored) == sorted(acknowledged)  # every 200 is stored, exactly once
    finally:
        await tail.stop()


async def _retry_until_ok(client: httpx.AsyncClient, message_id: str) -> httpx.Response:
    """What an SDK does with a 503: retry after a pause, with the same messageId."""
    answer = await _post(client, message_id)
    for _ in range(20):
        if answer.status_code != 503:
            return answer
        await asyncio.sleep(0.5)
        answer = await _post(client, message_id)
    return answer


async def test_ingest_starts_without_a_broker_and_answers_503(tmp_path: Path) -> None:
    kafka = KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{free_port()}",
        publish_timeout_s=1.0,
        request_timeout_ms=1_000,
    )
    app = create_app(ingest_settings(kafka))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 503
            answer = await _post(client, "no-broker")
            assert answer.status_code == 503
            assert "retry-after" in answer.headers
