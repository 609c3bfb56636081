"""An ingest app on the session's broker, driven through its ASGI interface."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.ingest.app import create_app
from services.ingest.settings import IngestGroup, IngestSettings
from shared.auth import hash_token
from shared.events import ALL_TOPICS
from shared.events.customer_events import TOPIC
from shared.kafka.topics import ensure_topics, with_dead_letters
from shared.settings import KafkaSettings
from tests.support.kafka import TopicTail

WRITE_KEY = "test-write-key"
OTHER_WRITE_KEY = "second-write-key"


def basic(key: str) -> dict[str, str]:
    token = base64.b64encode(f"{key}:".encode()).decode()
    return {"Authorization": f"Basic {token}"}


AUTH = basic(WRITE_KEY)


def ingest_settings(kafka: KafkaSettings) -> IngestSettings:
    return IngestSettings(
        kafka=kafka,
        ingest=IngestGroup(
            write_key_hashes=f"{hash_token(WRITE_KEY)},{hash_token(OTHER_WRITE_KEY)}",
            retry_after_s=7,
        ),
    )


@pytest.fixture(scope="session")
async def topics(kafka_settings: KafkaSettings) -> None:
    await ensure_topics(kafka_settings, with_dead_letters(ALL_TOPICS))


@pytest.fixture(scope="session")
async def client(kafka_settings: KafkaSettings, topics: None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ingest_settings(kafka_settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield client


@pytest.fixture(scope="session")
async def events_tail(bootstrap_servers: str, topics: None) -> AsyncIterator[TopicTail]:
    tail = await TopicTail(bootstrap_servers, TOPIC).start()
    yield tail
    await tail.stop()


def problem_code(answer: httpx.Response) -> str:
    """The code of a problem answer (``urn:tenure:problem:<code>``)."""
    assert answer.headers["content-type"] == "application/problem+json", answer.text
    problem = answer.json()
    assert problem["status"] == answer.status_code and problem["request_id"], problem
    return str(problem["type"]).removeprefix("urn:tenure:problem:")


def problem_fields(problem: dict[str, Any], *, skip: int = 1) -> list[str]:
    """The dotted field names of a problem's ``errors`` (``loc`` past its first ``skip``
    parts: ``body``, or ``body, batch, <index>``); ``body`` for the body itself."""
    return [".".join(str(p) for p in e["loc"][skip:]) or "body" for e in problem["errors"]]


def rejected_indexes(problem: dict[str, Any]) -> list[int]:
    """The batch indexes a 400 problem's ``errors`` name, in order."""
    return sorted({e["loc"][2] for e in problem["errors"]})
