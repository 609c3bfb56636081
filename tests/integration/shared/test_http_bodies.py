"""Every service's FastAPI routes: bodies are capped, and a 422 can always be answered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace

import httpx
import orjson
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, field_validator

from shared.http.app import create_service_app
from shared.settings import HttpSettings


class Thing(BaseModel):
    value: float
    note: str = ""

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("must be finite")
        return value


@asynccontextmanager
async def _nothing(app: FastAPI) -> AsyncIterator[None]:
    yield


def _app(max_body_bytes: int) -> FastAPI:
    app = create_service_app(title="t", description="t", version="1", lifespan=_nothing)
    app.state.settings = SimpleNamespace(http=HttpSettings(max_body_bytes=max_body_bytes))

    @app.post("/things")
    async def create(thing: Thing) -> dict[str, float]:
        return {"value": thing.value}

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(4096))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity"])
async def test_a_non_finite_number_gets_a_422_that_serialises(
    client: httpx.AsyncClient, number: bytes
) -> None:
    answer = await client.post("/things", content=b'{"value": ' + number + b"}", headers=JSON)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    (error,) = answer.json()["errors"]
    assert error["loc"] == ["body", "value"]
    assert "input" not in error  # inputs are not echoed (NaN has no JSON)


async def test_a_declared_body_over_the_cap_is_413_before_reading(
    client: httpx.AsyncClient,
) -> None:
    body = orjson.dumps({"value": 1, "note": "x" * 5000})
    answer = await client.post("/things", content=body, headers=JSON)
    assert answer.status_code == 413, answer.text
    assert answer.json()["limit_bytes"] == 4096
    assert answer.headers["x-request-id"]


async def test_a_streamed_body_over_the_cap_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"value": 1, "note": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    answer = await client.post("/things", content=chunks(), headers=JSON)
    assert answer.status_code == 413, answer.text
    assert "4096 bytes" in answer.json()["detail"]


async def test_bodies_under_the_cap_are_read(client: httpx.AsyncClient) -> None:
    answer = await client.post("/things", json={"value": 2.5, "note": "x" * 3000})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"value": 2.5}


async def test_an_integer_over_64_bits_in_a_refused_body_gets_a_422(
    client: httpx.AsyncClient,
) -> None:
    """Schemathesis found the echo of such an integer failing orjson with a 500."""
    big = b"123456789012345678901234567890"
    answer = await client.post("/things", content=b"[" + big + b"]", headers=JSON)
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["errors"]
    assert error["loc"] == ["body"] and "input" not in error
