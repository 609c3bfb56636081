"""Ingest's HTTP API: the Segment tracking API, answered only after the broker's ack.

``POST /v1/{track,identify,page,screen,group,alias}`` take one call,
``POST /v1/batch`` (and ``/v1/import``) take ``{"batch": [...]}``. A 200 means
every accepted event is stored in ``customer.events`` with ``acks=all``; every
other answer is a problem (``application/problem+json``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from services.ingest.api import batch, calls
from services.ingest.openapi import documented_openapi
from services.ingest.runtime import Runtime
from services.ingest.settings import IngestSettings, get_settings
from shared.collector import tuned_for_throughput
from shared.http.app import create_service_app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime = Runtime(app.state.settings)
    await runtime.start(app)
    app.state.runtime = runtime
    try:
        with tuned_for_throughput():
            yield
    finally:
        await runtime.stop()


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    app = create_service_app(
        title="Tenure ingest",
        description="Segment-compatible tracking API. Events are answered 200 only once "
        "the broker acknowledged them.",
        version="1",
        lifespan=lifespan,
    )
    app.state.settings = settings or get_settings()
    app.state.max_body_bytes = None  # the routes read bodies under limits of their own
    app.include_router(calls.router)
    app.include_router(batch.router)
    app.openapi = partial(documented_openapi, app)  # type: ignore[method-assign]
    return app
