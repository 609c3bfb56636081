"""Issue 21: a request whose query passes the statement timeout is a 503 problem with
Retry-After, for every service (the handler ``create_service_app`` installs), whether
the query went through SQLAlchemy or straight to asyncpg; other database errors stay
500s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import text

from shared.db.engine import create_engine, driver_connection
from shared.http.app import create_service_app
from shared.settings import DatabaseSettings
from tests.conftest import NewDatabase


@asynccontextmanager
async def _nothing(app: FastAPI) -> AsyncIterator[None]:
    yield


@pytest.fixture
async def client(new_database: NewDatabase) -> AsyncIterator[httpx.AsyncClient]:
    settings = DatabaseSettings(url=SecretStr(await new_database()), statement_timeout_ms=100)
    engine = create_engine(settings)
    app = create_service_app(title="t", description="t", version="1", lifespan=_nothing)

    @app.get("/slow-sqlalchemy")
    async def slow_sqlalchemy() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_sleep(2)"))

    @app.get("/slow-driver")
    async def slow_driver() -> None:
        async with engine.connect() as conn, conn.begin():
            driver = await driver_connection(conn)
            await driver.fetch("SELECT pg_sleep(2)")

    @app.get("/broken")
    async def broken() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1 / 0"))

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client
    finally:
        await engine.dispose()


@pytest.mark.parametrize("path", ["/slow-sqlalchemy", "/slow-driver"])
async def test_a_statement_timeout_is_a_503_problem(client: httpx.AsyncClient, path: str) -> None:
    answer = await client.get(path)
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "5"
    body = answer.json()
    assert body["type"] == "urn:tenure:problem:unavailable"
    assert body["status"] == 503 and body["request_id"]


async def test_another_database_error_is_still_a_500(client: httpx.AsyncClient) -> None:
    answer = await client.get("/broken")
    assert answer.status_code == 500
    assert answer.json()["type"] == "urn:tenure:problem:internal_error"
