"""The journey service's admin HTTP API: one router per resource."""

from __future__ import annotations

from fastapi import FastAPI

from services.journey.api import journeys, runs
from shared.http import replay

ROUTERS = (journeys.router, runs.router, runs.customers_router, replay.router)


def install(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)
