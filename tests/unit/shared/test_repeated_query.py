"""A parameter given twice, or without a name, is a 400 problem in every service (found
by Schemathesis's negative data: FastAPI kept one of the values and answered 200)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from shared.http.app import create_service_app


@asynccontextmanager
async def _nothing(app: FastAPI) -> AsyncIterator[None]:
    yield


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("journey_id=a", 200),
        ("journey_id=a&other=b", 200),
        ("journey_id=", 200),
        ("journey_id=a&journey_id=b", 400),
        ("=x", 400),
        ("journey_id=a&=", 400),
    ],
)
async def test_a_repeated_or_nameless_query_parameter_is_a_400(query: str, status: int) -> None:
    app = create_service_app(title="t", description="t", version="1", lifespan=_nothing)

    @app.get("/v1/things")
    async def things(journey_id: str | None = None, other: str | None = None) -> dict[str, str]:
        return {"journey_id": journey_id or ""}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = await client.get(f"/v1/things?{query}")
    assert answer.status_code == status, answer.text
    if status == 400:
        assert answer.json()["type"] == "urn:tenure:problem:invalid_query"
