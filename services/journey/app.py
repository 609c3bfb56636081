"""The journey service: the consumer of five topics, the run timer sweep, the outbox
relay (:mod:`.runtime`), and the admin HTTP API for journeys and runs (:mod:`.api`).

Every endpoint but the operational ones needs ``Authorization: Bearer <admin token>``.
"""

from __future__ import annotations

from fastapi import FastAPI

from services.journey import api
from services.journey.runtime import Runtime
from services.journey.settings import JourneySettings, get_settings
from shared.clock import Clock, utc_now
from shared.runtime import service_app


def create_app(settings: JourneySettings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or get_settings()
    return service_app(
        title="Tenure journey",
        description="Journeys triggered by actions, segments and inactivity: durable waits, "
        "branches, splits and goals.",
        settings=settings,
        clock=clock,
        admin_token_digests=settings.journey.admin_token_digests,
        runtime=lambda: Runtime(settings, clock),
        install=api.install,
    )
