"""The segmenter's service: the ``customer.events`` consumer, the timer sweep, the
score refits, the outbox relay (:mod:`.runtime`), and the admin HTTP API for
segments, profiles, suppressions and scores (:mod:`.api`, each route calling
:mod:`.admin`).

Every endpoint but the operational ones needs ``Authorization: Bearer <admin token>``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.segmenter import api
from services.segmenter.runtime import Runtime
from services.segmenter.settings import SegmenterSettings, get_settings
from shared.auth import TokenDigests
from shared.clock import Clock, utc_now
from shared.collector import tuned_for_throughput
from shared.http.app import create_service_app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime = Runtime(app.state.settings, app.state.clock)
    app.state.runtime = runtime
    async with runtime.service.running(app):
        with tuned_for_throughput():
            yield


def create_app(settings: SegmenterSettings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or get_settings()
    app = create_service_app(
        title="Tenure segmenter",
        description="Customer profiles, segments, churn risk and lifetime value.",
        version="1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.admin_tokens = TokenDigests(settings.segmenter.admin_token_digests)
    api.install(app)
    return app
