"""A write key over its rate gets 429 with Retry-After; the refusal is counted by digest."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.ingest.app import create_app
from shared.auth import hash_token
from shared.settings import KafkaSettings
from tests.integration.ingest.conftest import (
    AUTH,
    OTHER_WRITE_KEY,
    WRITE_KEY,
    basic,
    ingest_settings,
    problem_code,
)


@pytest.fixture
async def limited(kafka_settings: KafkaSettings, topics: None) -> AsyncIterator[httpx.AsyncClient]:
    settings = ingest_settings(kafka_settings)
    # the default: 0.5 event/s with a burst of 3; the second key: 1000/s
    settings.ingest.rate_limit = "0.5/3"
    settings.ingest.rate_limits = f"{hash_token(OTHER_WRITE_KEY)}=1000"
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield client


def _refusals(text: str) -> dict[str, float]:
    return {
        s.labels["key_digest"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "tenure_ingest_rate_limited_requests_total"
    }


async def test_429_with_retry_after_and_a_digest_labelled_metric(
    limited: httpx.AsyncClient,
) -> None:
    digest = hash_token(WRITE_KEY)[:8]
    before = _refusals((await limited.get("/metrics")).text).get(digest, 0.0)
    call = {"userId": "rl", "event": "E"}
    for _ in range(3):
        assert (await limited.post("/v1/track", json=call, headers=AUTH)).status_code == 200
    refused = await limited.post("/v1/track", json=call, headers=AUTH)
    assert refused.status_code == 429, refused.text
    assert problem_code(refused) == "rate_limited"
    assert int(refused.headers["retry-after"]) == 2  # one token at 0.5/s
    # a batch counts its events; the body key is limited the same way
    batch = {"writeKey": WRITE_KEY, "batch": [{"type": "track", **call}] * 2}
    assert (await limited.post("/v1/batch", json=batch)).status_code == 429
    # the other key has its own, larger limit
    other = basic(OTHER_WRITE_KEY)
    for _ in range(20):
        assert (await limited.post("/v1/track", json=call, headers=other)).status_code == 200

    metrics = (await limited.get("/metrics")).text
    assert _refusals(metrics)[digest] - before == 2
    assert WRITE_KEY not in metrics and hash_token(WRITE_KEY) not in metrics


async def test_no_limit_by_default(client: httpx.AsyncClient) -> None:
    call = {"userId": "rl", "event": "E"}
    for _ in range(30):
        assert (await client.post("/v1/track", json=call, headers=AUTH)).status_code == 200
