"""The segmenter's admin HTTP API: one router per resource, each route calling
:mod:`..admin`. Errors are the shared problem details (:mod:`..errors`), answered by
the handlers :func:`shared.http.app.create_service_app` installs."""

from __future__ import annotations

from fastapi import FastAPI

from services.segmenter.api import (
    loyalty,
    profiles,
    recommendations,
    scores,
    segments,
    suppressions,
)
from shared.http import replay

ROUTERS = (
    segments.router,
    profiles.router,
    suppressions.router,
    scores.router,
    recommendations.router,
    loyalty.router,
    replay.router,
)


def install(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)
