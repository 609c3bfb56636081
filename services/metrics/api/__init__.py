"""The metrics service's HTTP API: one router per resource."""

from __future__ import annotations

from fastapi import FastAPI

from services.metrics.api import experiments, kpis, objectives, report
from shared.http import replay

ROUTERS = (
    kpis.router,
    experiments.router,
    objectives.router,
    report.router,
    report.page_router,
    replay.router,
)


def install(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)
