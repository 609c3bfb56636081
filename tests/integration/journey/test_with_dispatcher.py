"""The journey and the real dispatcher on one broker: a run's request is sent as an
email, the dispatcher's outcome moves the run on; a customer the dispatcher cannot
reach goes down the failure branch instead of stalling."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from shared.db.migrations import upgrade
from shared.events import customer_events as customer_events_topic
from shared.events import profiles as profiles_topic
from shared.events.base import Position
from shared.events.profiles import ProfileUpdate
from tenure.embedded import EmbeddedBroker
from tenure.services import SERVICES
from tenure.sinks import HttpRecorder, SmtpSink
from tests.conftest import NewDatabase
from tests.integration.dispatcher.conftest import ADMIN as DISPATCHER_ADMIN
from tests.integration.dispatcher.conftest import start_stack
from tests.integration.journey.conftest import Stack, module_kafka, track
from tests.integration.journey.test_steps import customer, kinds, name


@pytest.fixture
async def dispatcher(
    module_broker: EmbeddedBroker,
    new_database: NewDatabase,
    stack: Stack,
    tmp_path: Any,
) -> AsyncIterator[tuple[httpx.AsyncClient, SmtpSink, Any]]:
    url = await new_database()
    await asyncio.to_thread(
        upgrade, script_location=SERVICES["dispatcher"].migrations_dir, database_url=url
    )
    smtp = SmtpSink(maildir=tmp_path / "Maildir").start()
    recorder = HttpRecorder().start()
    try:
        app, _, _ = await start_stack(
            kafka_settings=module_kafka(module_broker),
            url=url,
            smtp=smtp,
            recorder=recorder,
            clock=stack.clock,
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://d.test") as client:
                await app.state.runtime.runner.started.wait()
                yield client, smtp, app.state.runtime.engine
    finally:
        smtp.stop()
        recorder.stop()


async def test_outcomes_of_the_real_dispatcher_move_runs_on(
    stack: Stack, dispatcher: tuple[httpx.AsyncClient, SmtpSink, Any]
) -> None:
    client, smtp, dispatcher_engine = dispatcher
    created = await client.post(
        "/v1/templates",
        json={
            "id": "welcome-e2e",
            "definition": {
                "name": "Welcome",
                "variants": [{"channel": "email", "subject": "Welcome", "text": "Hello"}],
            },
        },
        headers=DISPATCHER_ADMIN,
    )
    assert created.status_code == 201, created.text
    trigger = name("Signed Up")
    await stack.journey(
        {
            "triggers": [{"kind": "event", "event": trigger}],
            "steps": [
                {
                    "id": "mail",
                    "type": "send",
                    "channels": ["email"],
                    "template_id": "welcome-e2e",
                    "next": "done",
                    "on_failure": "tag",
                },
                {
                    "id": "tag",
                    "type": "update_trait",
                    "traits": {"unreachable": True},
                    "next": "done",
                },
                {"id": "done", "type": "exit"},
            ],
        }
    )
    reachable, unreachable = customer(), customer()
    before = smtp.count
    at = {}
    for who in (reachable, unreachable):
        (delivered,) = await stack.send(
            customer_events_topic.TOPIC, track(who, trigger, stack.clock.now)
        )
        at[who] = Position(partition=delivered.partition, offset=delivered.offset)
    # the segmenter's profiles, having folded the trigger (the requests wait for them)
    await stack.send(
        profiles_topic.TOPIC,
        ProfileUpdate(
            customer_id=reachable,
            version=1,
            email=f"{reachable}@example.com",
            updated_at=stack.clock.now,
            folded=at[reachable],
        ),
        ProfileUpdate(
            customer_id=unreachable, version=1, updated_at=stack.clock.now, folded=at[unreachable]
        ),
    )
    sent = await stack.run_events(reachable, 5, within_s=30)
    assert kinds(sent)[-2:] == ["step_reached:done", "exited:"]
    await smtp.wait_for(before + 1)
    failed = await stack.run_events(unreachable, 6, within_s=30)
    assert "step_reached:tag" in kinds(failed) and kinds(failed)[-1] == "exited:"


async def _projected(engine: Any, schema: str, ids: list[str]) -> None:
    """Wait until the service's projection of ``profiles`` holds these customers."""
    from sqlalchemy import text

    for _ in range(400):
        async with engine.connect() as conn:
            found = await conn.scalar(
                text(f"SELECT count(*) FROM {schema}.profiles WHERE customer_id = ANY(:ids)"),
                {"ids": ids},
            )
        if found == len(ids):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{schema} never projected {ids}")


async def welcome_journey(stack: Stack, client: httpx.AsyncClient, **send: Any) -> str:
    """A template "Welcome" on the dispatcher and a published journey that emails it on
    a fresh "Signed Up" event (``send``: more options of the send step); returns that
    event's name."""
    template = f"welcome-{uuid.uuid4().hex[:6]}"
    created = await client.post(
        "/v1/templates",
        json={
            "id": template,
            "definition": {
                "name": "Welcome",
                "variants": [{"channel": "email", "subject": "Welcome", "text": "Hello"}],
            },
        },
        headers=DISPATCHER_ADMIN,
    )
    assert created.status_code == 201, created.text
    trigger = name("Signed Up")
    mail = {"id": "mail", "type": "send", "channels": ["email"], "template_id": template}
    await stack.journey(
        {
            "triggers": [{"kind": "event", "event": trigger}],
            "steps": [{**mail, "next": "done", **send}, {"id": "done", "type": "exit"}],
        }
    )
    return trigger
