"""The metrics service: the consumer of every topic, the experiment evaluator, the
outbox relay of ``experiment.decisions`` (:mod:`.runtime`), the KPI API and the report
page (:mod:`.api`).

Every ``/v1`` endpoint needs ``Authorization: Bearer <admin token>``; ``/report``
is a static page that asks for the token and reads ``/v1/report`` with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.metrics import api
from services.metrics.runtime import Runtime
from services.metrics.settings import MetricsSettings, get_settings
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


def create_app(settings: MetricsSettings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or get_settings()
    app = create_service_app(
        title="Tenure metrics",
        description="Retention KPIs, messaging funnel, experiments and objectives.",
        version="1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.admin_tokens = TokenDigests(settings.metrics.admin_token_digests)
    api.install(app)
    return app
