"""Sends under crash, with an SMTP server that stalls in the middle of a send (it has
the whole message, and has not answered yet): a dispatcher process killed with SIGKILL
then, or a send that outlives its lease, sends the message at most once and ends the
delivery in exactly one final outcome (``failed``, interrupted: whether the provider
kept the message is unknown, so it is never sent again)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

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
from tests.conftest import NewDatabase
from tests.integration.dispatcher.conftest import START
from tests.integration.dispatcher.test_crash import _projected, _ready, _start
from tests.support.kafka import TopicTail

pytestmark = pytest.mark.slow
TOKEN = "stall-admin"
LEASE_S = 3


class StallingSmtp:
    """An aiosmtpd server that takes each message whole, counts it, then stalls before
    answering until :meth:`release` (a provider that has the message and has not said
    so)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[bytes] = []
        self._released = threading.Event()
        self._controller: Any = None

    def start(self) -> StallingSmtp:
        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                sink.received.append(envelope.original_content or envelope.content)
                await asyncio.to_thread(sink._released.wait)
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def release(self) -> None:
        self._released.set()

    def stop(self) -> None:
        self.release()
        self._controller.stop()

    def to(self, customer_id: str) -> int:
        """How many messages to this customer reached the server."""
        address = f"To: {customer_id}@example.com\r\n".encode()
        return sum(address in message for message in self.received)

    async def wait_for(self, customer_id: str, within_s: float = 30) -> None:
        for _ in range(int(within_s / 0.05)):
            if self.to(customer_id):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no message to {customer_id} reached the server")


@pytest.fixture
def smtp() -> Iterator[StallingSmtp]:
    server = StallingSmtp().start()
    yield server
    server.stop()


class Dispatcher:
    """A dispatcher process (``tenure serve dispatcher``), killed or stopped at will."""

    def __init__(self, env: dict[str, str], log: Path, port: int) -> None:
        self.env, self.log, self.port = env, log, port
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = _start(self.env, self.log)
        await _ready(self.port, self.process)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
async def setup(
    kafka_settings: KafkaSettings,
    bootstrap_servers: str,
    new_database: NewDatabase,
    smtp: StallingSmtp,
    tmp_path: Path,
) -> AsyncIterator[tuple[Dispatcher, EventPublisher, TopicTail, str]]:
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
        TENURE_DISPATCHER_LINK_SECRET="stall-test-link-secret-0123",
        TENURE_DISPATCHER_ADMIN_TOKEN_HASHES=hash_token(TOKEN),
        TENURE_DISPATCHER_CONSUMER_GROUP=f"stall-{uuid.uuid4().hex[:8]}",
        TENURE_DISPATCHER_SENDING_LEASE_S=str(LEASE_S),
        TENURE_SMTP_PORT=str(smtp.port),
        TENURE_SMTP_TIMEOUT_S="60",
    )
    dispatcher = Dispatcher(env, tmp_path / "dispatcher.log", port)
    publisher = EventPublisher(kafka_settings, client_id="stall-test")
    await publisher.start()
    outcomes = await TopicTail(bootstrap_servers, dispatch_outcomes.TOPIC).start()
    try:
        await dispatcher.start()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            answer = await client.post(
                "/v1/templates",
                headers={"Authorization": f"Bearer {TOKEN}"},
                json={
                    "id": "stall",
                    "definition": {
                        "name": "stall",
                        "variants": [{"channel": "email", "subject": "s", "text": "t"}],
                    },
                },
            )
            assert answer.status_code == 201, answer.text
        yield dispatcher, publisher, outcomes, url
    finally:
        dispatcher.stop()
        await outcomes.stop()
        await publisher.stop()


async def _request(publisher: EventPublisher, url: str) -> DispatchRequest:
    customer = f"stall-{uuid.uuid4().hex[:8]}"
    await publisher.publish(
        Message(
            profiles.TOPIC,
            customer.encode(),
            ProfileUpdate(
                customer_id=customer, version=1, email=f"{customer}@example.com", updated_at=START
            ).to_bytes(),
        )
    )
    await _projected(url, 1, prefix=customer)
    request = DispatchRequest(
        dispatch_id=f"{customer}-d",
        customer_id=customer,
        channels=["email"],
        template_id="stall",
        priority="critical",
        requested_at=START,
    )
    await publisher.publish(Message(dispatch_requests.TOPIC, request.key, request.to_bytes()))
    return request


def _outcomes_of(outcomes: TopicTail, dispatch_id: str) -> list[dict[str, Any]]:
    found = [orjson.loads(r.value) for r in outcomes.records]
    return [o for o in found if o["dispatchId"] == dispatch_id]


async def _final(outcomes: TopicTail, dispatch_id: str, within_s: float = 60) -> dict[str, Any]:
    for _ in range(int(within_s / 0.1)):
        finals = [
            o
            for o in _outcomes_of(outcomes, dispatch_id)
            if o["status"] in ("sent", "suppressed", "failed")
        ]
        if finals:
            return finals[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no final outcome for {dispatch_id}")


async def _stored(url: str, dispatch_id: str) -> tuple[str, list[str]]:
    """The delivery's status and its stored outcomes' statuses."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        status = await conn.fetchval(
            "SELECT status FROM dispatcher.deliveries WHERE dispatch_id = $1", dispatch_id
        )
        rows = await conn.fetch(
            "SELECT status FROM dispatcher.outcomes WHERE dispatch_id = $1 ORDER BY at",
            dispatch_id,
        )
    finally:
        await conn.close()
    return status, [row["status"] for row in rows]


async def test_killed_while_the_server_stalls_the_message_is_sent_at_most_once(
    setup: tuple[Dispatcher, EventPublisher, TopicTail, str], smtp: StallingSmtp
) -> None:
    dispatcher, publisher, outcomes, url = setup
    request = await _request(publisher, url)
    # the server has the message and stalls before answering
    await smtp.wait_for(request.customer_id)
    dispatcher.kill()
    await dispatcher.start()  # the request comes again: its delivery is held, nothing sent
    final = await _final(outcomes, request.dispatch_id)
    assert final["status"] == "failed"
    assert final["reason"].startswith("provider_error: interrupted")
    smtp.release()
    await asyncio.sleep(LEASE_S + 1)  # an expiry round and a redelivery more: still one
    assert smtp.to(request.customer_id) == 1
    finals = {
        o["outcomeId"]
        for o in _outcomes_of(outcomes, request.dispatch_id)
        if o["status"] != "deferred"
    }
    assert finals == {f"{request.dispatch_id}:failed"}
    assert await _stored(url, request.dispatch_id) == ("failed", ["failed"])


async def test_a_send_slower_than_its_lease_keeps_one_final_outcome(
    setup: tuple[Dispatcher, EventPublisher, TopicTail, str], smtp: StallingSmtp
) -> None:
    """The process lives, the send outlives the lease: the expiry gives the delivery its
    ``interrupted`` failure; the provider's late answer is not recorded over it (a
    delivery leaves ``sending`` once), so no ``sent`` outcome follows the ``failed``."""
    dispatcher, publisher, outcomes, url = setup
    request = await _request(publisher, url)
    await smtp.wait_for(request.customer_id)
    final = await _final(outcomes, request.dispatch_id)  # the lease ran out meanwhile
    assert final["status"] == "failed"
    smtp.release()  # the provider answers at last: 250
    await asyncio.sleep(2)
    assert smtp.to(request.customer_id) == 1
    statuses = [o["status"] for o in _outcomes_of(outcomes, request.dispatch_id)]
    assert statuses == ["failed"]
    assert await _stored(url, request.dispatch_id) == ("failed", ["failed"])
