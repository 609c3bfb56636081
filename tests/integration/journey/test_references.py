"""Publishing checks what a journey names against the real segmenter and dispatcher
over HTTP: a segment, template or template version that does not exist is a 422
naming it; a service that cannot be asked is a 503."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from services.journey.references import ReferenceChecker
from services.segmenter.app import create_app as create_segmenter
from services.segmenter.settings import SegmenterGroup, SegmenterSettings
from shared.auth import hash_token
from shared.db.migrations import upgrade
from shared.settings import DatabaseSettings
from tenure.embedded import EmbeddedBroker, free_port
from tenure.services import SERVICES
from tenure.sinks import HttpRecorder, SmtpSink
from tests.conftest import NewDatabase
from tests.integration.dispatcher.conftest import start_stack
from tests.integration.journey.conftest import ADMIN, ADMIN_TOKEN, Stack, module_kafka
from tests.support.servers import serving


async def _migrated(new_database: NewDatabase, service: str) -> str:
    url = await new_database()
    await asyncio.to_thread(
        upgrade, script_location=SERVICES[service].migrations_dir, database_url=url
    )
    return url


@pytest.fixture
async def peers(
    module_broker: EmbeddedBroker, new_database: NewDatabase, stack: Stack, tmp_path: Any
) -> AsyncIterator[tuple[str, str]]:
    """The real segmenter and dispatcher, each served over HTTP on loopback."""
    kafka = module_kafka(module_broker)
    segmenter = create_segmenter(
        SegmenterSettings(
            kafka=kafka,
            database=DatabaseSettings(url=await _migrated(new_database, "segmenter")),
            segmenter=SegmenterGroup(
                admin_token_hashes=hash_token(ADMIN_TOKEN),
                consumer_group=f"segmenter-{uuid.uuid4().hex[:8]}",
                refit_interval_s=0,
            ),
        ),
        clock=stack.clock,
    )
    smtp = SmtpSink(maildir=tmp_path / "Maildir").start()
    recorder = HttpRecorder().start()
    try:
        dispatcher, _, _ = await start_stack(
            kafka_settings=kafka,
            url=await _migrated(new_database, "dispatcher"),
            smtp=smtp,
            recorder=recorder,
            clock=stack.clock,
        )
        async with serving(segmenter) as segmenter_url, serving(dispatcher) as dispatcher_url:
            yield segmenter_url, dispatcher_url
    finally:
        smtp.stop()
        recorder.stop()


@pytest.fixture
def checking(stack: Stack) -> Iterator[Any]:
    """Point the journey's reference checker elsewhere for one test."""
    saved = stack.runtime.references

    def use(segmenter_url: str, dispatcher_url: str) -> None:
        stack.runtime.references = ReferenceChecker(
            segmenter_url=segmenter_url, dispatcher_url=dispatcher_url, token=ADMIN_TOKEN
        )

    yield use
    stack.runtime.references = saved


def _document(*, segment: str, template: str, version: int | None = None) -> dict[str, Any]:
    send: dict[str, Any] = {
        "id": "mail",
        "type": "send",
        "channels": ["email"],
        "template_id": template,
        "next": "done",
    }
    if version is not None:
        send["template_version"] = version
    return {
        "triggers": [{"kind": "segment", "segment_id": segment}],
        "steps": [send, {"id": "done", "type": "exit"}],
    }


async def _publish(stack: Stack, document: dict[str, Any]) -> httpx.Response:
    journey_id = f"j-{uuid.uuid4().hex[:8]}"
    created = await stack.client.post(
        "/v1/journeys",
        json={"id": journey_id, "name": journey_id, "definition": document},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    return await stack.client.post(f"/v1/journeys/{journey_id}/publish", headers=ADMIN)


async def test_publishing_names_what_does_not_exist(
    stack: Stack, peers: tuple[str, str], checking: Any
) -> None:
    segmenter_url, dispatcher_url = peers
    checking(segmenter_url, dispatcher_url)
    tag = uuid.uuid4().hex[:6]
    segment, template = f"vip-{tag}", f"welcome-{tag}"
    async with httpx.AsyncClient(headers=ADMIN, timeout=10) as client:
        made = await client.post(
            f"{segmenter_url}/v1/segments",
            json={
                "id": segment,
                "name": segment,
                "rule": {"kind": "last_event", "older_than_days": 30},
            },
        )
        assert made.status_code == 201, made.text
        made = await client.post(
            f"{dispatcher_url}/v1/templates",
            json={
                "id": template,
                "definition": {
                    "name": "Welcome",
                    "variants": [{"channel": "email", "subject": "Hi", "text": "Hello"}],
                },
            },
        )
        assert made.status_code == 201, made.text

    answer = await _publish(stack, _document(segment=f"nope-{tag}", template=f"gone-{tag}"))
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert f"segment 'nope-{tag}'" in problem["detail"]
    assert f"template 'gone-{tag}'" in problem["detail"]
    assert sorted((e["loc"], e["type"]) for e in problem["errors"]) == [
        (["body", "definition", "steps", 0, "template_id"], "unknown_template"),
        (["body", "definition", "triggers", 0, "segment_id"], "unknown_segment"),
    ]

    answer = await _publish(stack, _document(segment=segment, template=template, version=9))
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].endswith(f"template '{template}' version 9")

    answer = await _publish(stack, _document(segment=segment, template=template, version=1))
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "active"
    answer = await _publish(stack, _document(segment=segment, template=template))
    assert answer.status_code == 200, answer.text


async def test_a_service_that_cannot_be_asked_is_503(stack: Stack, checking: Any) -> None:
    checking("", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    answer = await _publish(stack, _document(segment="any", template="welcome"))
    assert answer.status_code == 503, answer.text
    assert "the dispatcher does not answer" in answer.json()["detail"]
