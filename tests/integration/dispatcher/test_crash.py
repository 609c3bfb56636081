"""A dispatcher process killed in the middle of a batch sends nothing twice after it
restarts, and every request still ends with a final outcome."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from shared.auth import hash_token
from shared.db.migrations import upgrade
from shared.events import ALL_TOPICS, dispatch_outcomes, dispatch_requests, profiles
from shared.events.dispatch_requests import DispatchRequest
from shared.events.profiles import ProfileUpdate
from shared.kafka.producer import EventPublisher, Message
from shared.kafka.topics import ensure_topics, with_dead_letters
from shared.settings import KafkaSettings
from tenure.embedded import free_port
from tenure.services import SERVICES
from tenure.sinks import SmtpSink
from tests.conftest import NewDatabase
from tests.integration.dispatcher.conftest import START
from tests.support.kafka import TopicTail

pytestmark = pytest.mark.slow
TOKEN = "crash-admin"
COUNT = 40


@pytest.fixture
def slow_smtp(tmp_path: Path) -> Iterator[SmtpSink]:
    sink = SmtpSink(maildir=tmp_path / "Maildir", delay_s=0.15).start()
    yield sink
    sink.stop()


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tenure", "serve", "dispatcher"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _ready(port: int, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            assert process.poll() is None, "the dispatcher exited"
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the dispatcher never became ready")


async def _projected(url: str, count: int, *, prefix: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        for _ in range(600):
            found = await conn.fetchval(
                "SELECT count(*) FROM dispatcher.profiles WHERE customer_id LIKE $1",
                prefix + "%",
            )
            if found >= count:
                return
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise AssertionError("the profiles were never projected")


async def test_killed_mid_batch_sends_nothing_twice(
    kafka_settings: KafkaSettings,
    bootstrap_servers: str,
    new_database: NewDatabase,
    slow_smtp: SmtpSink,
    tmp_path: Path,
) -> None:
    await ensure_topics(kafka_settings, with_dead_letters(ALL_TOPICS))
    url = await new_database()
    await asyncio.to_thread(
        upgrade, script_location=SERVICES["dispatcher"].migrations_dir, database_url=url
    )
    port = free_port()
    env = dict(
        os.environ,
        TENURE_KAFKA_BOOTSTRAP_SERVERS=bootstrap_servers,
        TENURE_KAFKA_SESSION_TIMEOUT_MS="6000",
        TENURE_KAFKA_HEARTBEAT_INTERVAL_MS="500",
        TENURE_DATABASE_URL=url,
        TENURE_HTTP_PORT=str(port),
        TENURE_LOG_FORMAT="text",
        TENURE_DISPATCHER_LINK_SECRET="crash-test-link-secret-0123",
        TENURE_DISPATCHER_ADMIN_TOKEN_HASHES=hash_token(TOKEN),
        TENURE_DISPATCHER_CONSUMER_GROUP=f"crash-{uuid.uuid4().hex[:8]}",
        TENURE_DISPATCHER_SENDING_LEASE_S="3",
        TENURE_DISPATCHER_MAX_BATCH_RECORDS=str(COUNT),
        TENURE_SMTP_PORT=str(slow_smtp.port),
        TENURE_SMTP_CONNECTIONS="2",
    )
    log = tmp_path / "dispatcher.log"
    process = _start(env, log)
    publisher = EventPublisher(kafka_settings, client_id="crash-test")
    await publisher.start()
    outcomes = await TopicTail(bootstrap_servers, dispatch_outcomes.TOPIC).start()
    try:
        await _ready(port, process)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            answer = await client.post(
                "/v1/templates",
                headers={"Authorization": f"Bearer {TOKEN}"},
                json={
                    "id": "crash",
                    "definition": {
                        "name": "crash",
                        "variants": [{"channel": "email", "subject": "s", "text": "t"}],
                    },
                },
            )
            assert answer.status_code == 201, answer.text
        run = uuid.uuid4().hex[:6]
        customers = [f"crash-{run}-{i}" for i in range(COUNT)]
        await publisher.publish_many(
            Message(
                profiles.TOPIC,
                c.encode(),
                ProfileUpdate(
                    customer_id=c, version=1, email=f"{c}@example.com", updated_at=START
                ).to_bytes(),
            )
            for c in customers
        )
        await _projected(url, COUNT, prefix=f"crash-{run}-")  # before the requests
        requests = [
            DispatchRequest(
                dispatch_id=f"{c}-d",
                customer_id=c,
                channels=["email"],
                template_id="crash",
                priority="critical",
                requested_at=START,
            )
            for c in customers
        ]
        await publisher.publish_many(
            Message(dispatch_requests.TOPIC, r.key, r.to_bytes()) for r in requests
        )
        await slow_smtp.wait_for(5, within_s=60)
        process.send_signal(signal.SIGKILL)  # in the middle of the batch
        process.wait()
        delivered_at_kill = slow_smtp.count
        assert delivered_at_kill < COUNT, "the batch finished before the kill"

        process = _start(env, log)
        await _ready(port, process)
        ids = {r.dispatch_id for r in requests}

        def finals() -> dict[str, str]:
            found: dict[str, str] = {}
            for record in outcomes.records:
                value = orjson.loads(record.value)
                if value["dispatchId"] in ids and value["status"] in ("sent", "failed"):
                    found.setdefault(value["dispatchId"], value["status"])
            return found

        for _ in range(600):
            if len(finals()) == COUNT:
                break
            await asyncio.sleep(0.1)
        done = finals()
        assert len(done) == COUNT, f"{COUNT - len(done)} requests without a final outcome"
        sent_twice = [
            m for m, n in Counter(str(m["Message-ID"]) for m in slow_smtp.messages).items() if n > 1
        ]
        assert sent_twice == []
        # what was cut short is failed (interrupted), never sent again
        interrupted = [
            orjson.loads(r.value)
            for r in outcomes.records
            if orjson.loads(r.value).get("reason", "").startswith("provider_error: interrupted")
        ]
        assert interrupted, "nothing was in flight at the kill"
        assert slow_smtp.count <= COUNT
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
        await outcomes.stop()
        await publisher.stop()
