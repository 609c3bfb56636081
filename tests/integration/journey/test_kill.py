"""A journey service killed (SIGKILL) in the middle of waits fires each timer exactly
once after a restart: timers are rows, a firing is one transaction with its effects."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import text

from shared.db.engine import create_engine
from shared.events import ALL_TOPICS, dispatch_requests, journey_runs
from shared.events.customer_events import TOPIC
from shared.kafka.producer import EventPublisher, Message
from shared.kafka.topics import ensure_topics, with_dead_letters
from shared.settings import DatabaseSettings
from tenure.embedded import EmbeddedBroker, free_port
from tests.conftest import NewDatabase
from tests.integration.journey.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    migrated_database,
    module_kafka,
    track,
)
from tests.support.kafka import TopicTail

pytestmark = pytest.mark.slow

CUSTOMERS = 40


def _serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "tenure", "serve", "journey"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


async def _ready(client: httpx.AsyncClient, process: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        assert process.poll() is None, "the journey service exited"
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the journey service never became ready")


async def test_sigkill_mid_waits_fires_each_timer_once(
    module_broker: EmbeddedBroker, new_database: NewDatabase, tmp_path: Path
) -> None:
    from shared.auth import hash_token

    kafka = module_kafka(module_broker)
    await ensure_topics(kafka, with_dead_letters(ALL_TOPICS))
    url = await migrated_database(new_database)
    port = free_port()
    env = dict(
        os.environ,
        TENURE_KAFKA_BOOTSTRAP_SERVERS=module_broker.bootstrap_servers,
        TENURE_KAFKA_SESSION_TIMEOUT_MS="6000",
        TENURE_KAFKA_HEARTBEAT_INTERVAL_MS="500",
        TENURE_DATABASE_URL=url,
        TENURE_HTTP_PORT=str(port),
        TENURE_JOURNEY_ADMIN_TOKEN_HASHES=hash_token(ADMIN_TOKEN),
        TENURE_JOURNEY_CONSUMER_GROUP=f"journey-{uuid.uuid4().hex[:8]}",
        TENURE_JOURNEY_SWEEP_INTERVAL_S="0.05",
        TENURE_JOURNEY_SWEEP_CHUNK="7",
        TENURE_LOG_FORMAT="text",
    )
    trigger = f"Signed Up {uuid.uuid4().hex[:6]}"
    document = {
        "triggers": [{"kind": "event", "event": trigger}],
        "steps": [
            {"id": "wait", "type": "wait", "duration": "PT4S", "next": "mail"},
            {"id": "mail", "type": "send", "channels": ["email"], "template_id": "t", "next": "x"},
            {"id": "x", "type": "exit"},
        ],
    }
    log = tmp_path / "journey.log"
    process = _serve(env, log)
    publisher = EventPublisher(kafka, client_id="kill-test")
    requests = await TopicTail(module_broker.bootstrap_servers, dispatch_requests.TOPIC).start()
    runs = await TopicTail(module_broker.bootstrap_servers, journey_runs.TOPIC).start()
    engine = create_engine(DatabaseSettings(url=url))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await _ready(client, process)
            created = await client.post(
                "/v1/journeys",
                json={"id": "kill", "name": "kill", "definition": document},
                headers=ADMIN,
            )
            assert created.status_code == 201, created.text
            await client.post("/v1/journeys/kill/publish", headers=ADMIN)
            await publisher.start()
            customers = [f"k-{i}" for i in range(CUSTOMERS)]
            from datetime import UTC, datetime

            now = datetime.now(UTC)
            await publisher.publish_many(
                Message(TOPIC, e.key, e.to_bytes())
                for e in (track(c, trigger, now) for c in customers)
            )
            # wait until every run waits, then kill mid-waits (4 s each)
            for _ in range(400):
                async with engine.connect() as conn:
                    entered = await conn.scalar(text("SELECT count(*) FROM journey.runs"))
                    done = await conn.scalar(
                        text("SELECT count(*) FROM journey.runs WHERE status = 'exited'")
                    )
                if entered == CUSTOMERS:
                    break
                await asyncio.sleep(0.05)
            assert entered == CUSTOMERS
            process.send_signal(signal.SIGKILL)
            process.wait()
            assert done < CUSTOMERS, "every timer fired before the kill: nothing was tested"

        process = _serve(env, log)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await _ready(client, process)
            for _ in range(600):
                async with engine.connect() as conn:
                    done = await conn.scalar(
                        text("SELECT count(*) FROM journey.runs WHERE status = 'exited'")
                    )
                    timers = await conn.scalar(text("SELECT count(*) FROM journey.run_timers"))
                    queued = await conn.scalar(text("SELECT count(*) FROM journey.outbox"))
                if done == CUSTOMERS and timers == 0 and queued == 0:
                    break
                await asyncio.sleep(0.05)
            assert (done, timers, queued) == (CUSTOMERS, 0, 0)
        async with engine.connect() as conn:
            reached = await conn.scalar(
                text("SELECT reached FROM journey.step_counts WHERE step_id = 'mail'")
            )
        assert reached == CUSTOMERS  # each wait ended once: counted in the firing's transaction
        await requests.wait_for_count(lambda r: True, CUSTOMERS, within_s=20)
        ids = Counter(orjson.loads(r.value)["dispatchId"] for r in requests.records)
        assert len(ids) == CUSTOMERS  # at-least-once on the topic, one dispatch id per run
        exited = await runs.wait_for_count(
            lambda r: orjson.loads(r.value)["kind"] == "exited", CUSTOMERS, within_s=20
        )
        assert len({orjson.loads(r.value)["eventId"] for r in exited}) == CUSTOMERS
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        await publisher.stop()
        await requests.stop()
        await runs.stop()
        await engine.dispose()
