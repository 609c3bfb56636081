"""The journey service: the consumer of five topics, the run timer sweep, the outbox
relay (:mod:`.runtime`), and the admin HTTP API for journeys and runs (:mod:`.api`).

Every endpoint but the operational ones needs ``Authorization: Bearer <admin token>``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.journey import api
from services.journey.runtime import Runtime
from services.journey.settings import JourneySettings, get_settings
from shared.auth import TokenDigests
from shared.clock import Clock, utc_now
from shared.collector import tuned_for_throughput
from shared.http.app import create_service_app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime = Runtime(app.state.settings, app.state.clock)
    app.state.runtime = runtime
    async with runtime.service.running(app):
        with tuned_for_throughput():  # as ingest and the segmenter (shared/collector.py)
            yield


def create_app(settings: JourneySettings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or get_settings()
    app = create_service_app(
        title="Tenure journey",
        description="Journeys triggered by actions, segments and inactivity: durable waits, "
        "branches, splits and goals.",
        version="1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.admin_tokens = TokenDigests(settings.journey.admin_token_digests)
    api.install(app)
    return app
