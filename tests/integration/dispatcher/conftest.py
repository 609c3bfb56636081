"""A dispatcher on the session broker and a database of its own, with a real SMTP
server and a real HTTP endpoint on loopback standing in for the providers, and a
clock the tests move."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.dispatcher.app import create_app
from services.dispatcher.channels.email import SmtpSettings
from services.dispatcher.channels.http import (
    FcmSettings,
    MessengerSettings,
    WebhookSettings,
    WebPushSettings,
    WhatsAppSettings,
)
from services.dispatcher.settings import DispatcherGroup, DispatcherSettings
from shared.auth import hash_token
from shared.db.migrations import upgrade
from shared.events import ALL_TOPICS, customer_events, dispatch_outcomes, dispatch_requests
from shared.events import profiles as profiles_topic
from shared.events.dispatch_requests import DispatchRequest
from shared.events.profiles import ProfileUpdate
from shared.kafka.producer import EventPublisher, Message
from shared.kafka.topics import ensure_topics, with_dead_letters
from shared.settings import DatabaseSettings, KafkaSettings
from tenure.services import SERVICES
from tenure.sinks import HttpRecorder, SmtpSink
from tests.conftest import NewDatabase
from tests.support.clock import FakeClock
from tests.support.kafka import TopicTail

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LINK_SECRET = "link-secret-for-tests-0123456789"
START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # a Monday, noon UTC


@dataclass
class Keys:
    """Provider credentials made for the tests."""

    service_account: dict[str, Any]
    vapid_private_pem: str
    webhook_secret: str = "webhook-secret"


def make_keys(recorder: HttpRecorder) -> Keys:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    vapid = ec.generate_private_key(ec.SECP256R1())
    vapid_pem = vapid.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = {
        "type": "service_account",
        "project_id": "tenure-test",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "push@tenure-test.iam.gserviceaccount.com",
        "token_uri": f"{recorder.url}/token",
    }
    return Keys(account, vapid_pem)


def settings_for(
    *,
    kafka: KafkaSettings,
    url: str,
    smtp: SmtpSink,
    recorder: HttpRecorder,
    keys: Keys,
    **group: Any,
) -> DispatcherSettings:
    return DispatcherSettings(
        kafka=kafka,
        database=DatabaseSettings(url=url),
        dispatcher=DispatcherGroup(
            admin_token_hashes=hash_token(ADMIN_TOKEN),
            consumer_group=f"dispatcher-{uuid.uuid4().hex[:8]}",
            public_base_url="http://dispatcher.test",
            link_secret=LINK_SECRET,
            retry_attempts=3,
            retry_initial_s=0.01,
            retry_max_s=0.05,
            sweep_interval_s=0.05,
            **group,
        ),
        smtp=SmtpSettings(host="127.0.0.1", port=smtp.port, connections=4),
        fcm=FcmSettings(
            base_url=recorder.url,
            service_account_json=json.dumps(keys.service_account),
            allow=LOOPBACK,
        ),
        webpush=WebPushSettings(vapid_private_key=keys.vapid_private_pem, allow=LOOPBACK),
        whatsapp=WhatsAppSettings(
            base_url=recorder.url,
            phone_number_id="1234567890",
            access_token="wa-token",
            allow=LOOPBACK,
        ),
        messenger=MessengerSettings(
            base_url=recorder.url, page_access_token="page-token", allow=LOOPBACK
        ),
        webhook=WebhookSettings(secret=keys.webhook_secret, allow="localhost"),
    )


#: the recorder standing in for providers is on loopback, which the SSRF guard refuses
LOOPBACK = "127.0.0.1,localhost"


@dataclass
class Stack:
    client: httpx.AsyncClient
    clock: FakeClock
    publisher: EventPublisher
    outcomes: TopicTail
    events: TopicTail
    dead_letters: TopicTail
    smtp: SmtpSink
    recorder: HttpRecorder
    keys: Keys
    app: Any
    database_url: str
    sent: list[DispatchRequest] = field(default_factory=list)

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    async def request(self, **fields: Any) -> DispatchRequest:
        base: dict[str, Any] = {
            "dispatch_id": str(uuid.uuid4()),
            "channels": ["email"],
            "template_id": "welcome",
            "requested_at": self.clock.now,
        }
        request = DispatchRequest.model_validate({**base, **fields})
        await self.publisher.publish(
            Message(dispatch_requests.TOPIC, request.key, request.to_bytes())
        )
        self.sent.append(request)
        return request

    async def profile(self, customer_id: str, *, version: int = 1, **fields: Any) -> None:
        update = ProfileUpdate.model_validate(
            {"customer_id": customer_id, "version": version, "updated_at": START, **fields}
        )
        await self.publisher.publish(Message(profiles_topic.TOPIC, update.key, update.to_bytes()))

    async def contact_known(self, customer_id: str, version: int = 1) -> None:
        """Wait until the projection holds the profile's version."""
        from sqlalchemy import text

        for _ in range(300):
            async with self.runtime.engine.connect() as conn:
                found = await conn.scalar(
                    text("SELECT version FROM dispatcher.profiles WHERE customer_id = :c"),
                    {"c": customer_id},
                )
            if found is not None and found >= version:
                return
            await asyncio.sleep(0.03)
        raise AssertionError(f"profile {customer_id} v{version} never projected")

    async def outcomes_of(self, dispatch_id: str, count: int = 1) -> list[dict[str, Any]]:
        records = await self.outcomes.wait_for_count(
            lambda r: orjson.loads(r.value)["dispatchId"] == dispatch_id, count, within_s=20
        )
        return [orjson.loads(r.value) for r in records]

    async def final(self, dispatch_id: str) -> dict[str, Any]:
        def final(r: Any) -> bool:
            value = orjson.loads(r.value)
            return value["dispatchId"] == dispatch_id and value["status"] in (
                "sent",
                "suppressed",
                "failed",
            )

        return orjson.loads((await self.outcomes.wait_for(final, within_s=20)).value)  # type: ignore[no-any-return]

    async def event(self, name: str, dispatch_id: str) -> dict[str, Any]:
        def match(r: Any) -> bool:
            value = orjson.loads(r.value)
            return bool(
                value.get("event") == name
                and value.get("properties", {}).get("dispatchId") == dispatch_id
            )

        return orjson.loads((await self.events.wait_for(match, within_s=20)).value)  # type: ignore[no-any-return]

    async def template(self, template_id: str, **definition: Any) -> None:
        answer = await self.client.put(
            f"/v1/templates/{template_id}", json=definition, headers=ADMIN
        )
        if answer.status_code == 404:
            answer = await self.client.post(
                "/v1/templates", json={"id": template_id, "definition": definition}, headers=ADMIN
            )
        assert answer.status_code in (200, 201), answer.text


@pytest.fixture(scope="module")
def recorder() -> Iterator[HttpRecorder]:
    server = HttpRecorder().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpSink]:
    sink = SmtpSink(maildir=tmp_path_factory.mktemp("mail") / "Maildir").start()
    yield sink
    sink.stop()


async def start_stack(
    *,
    kafka_settings: KafkaSettings,
    url: str,
    smtp: SmtpSink,
    recorder: HttpRecorder,
    clock: FakeClock | None = None,
    **group: Any,
) -> tuple[Any, Keys, FakeClock]:
    keys = make_keys(recorder)
    settings = settings_for(
        kafka=kafka_settings, url=url, smtp=smtp, recorder=recorder, keys=keys, **group
    )
    clock = clock or FakeClock(START)
    return create_app(settings, clock=clock), keys, clock


@pytest.fixture(scope="module")
async def stack(
    kafka_settings: KafkaSettings,
    bootstrap_servers: str,
    new_database: NewDatabase,
    smtp: SmtpSink,
    recorder: HttpRecorder,
) -> AsyncIterator[Stack]:
    await ensure_topics(kafka_settings, with_dead_letters(ALL_TOPICS))
    url = await new_database()
    await asyncio.to_thread(
        upgrade, script_location=SERVICES["dispatcher"].migrations_dir, database_url=url
    )
    app, keys, clock = await start_stack(
        kafka_settings=kafka_settings, url=url, smtp=smtp, recorder=recorder
    )
    publisher = EventPublisher(kafka_settings, client_id="test-journey")
    await publisher.start()
    outcomes = await TopicTail(bootstrap_servers, dispatch_outcomes.TOPIC).start()
    events = await TopicTail(bootstrap_servers, customer_events.TOPIC).start()
    dlq = await TopicTail(bootstrap_servers, dispatch_requests.DLQ_TOPIC).start()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dispatcher.test") as c:
            await app.state.runtime.runner.started.wait()
            yield Stack(c, clock, publisher, outcomes, events, dlq, smtp, recorder, keys, app, url)
    for tail in (outcomes, events, dlq):
        await tail.stop()
    await publisher.stop()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
