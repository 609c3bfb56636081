"""The dispatcher's HTTP API, one router per resource: the public tracking endpoints
(``/t/…``, signed links, no token) and the admin API (``/v1/…``, admin token)."""

from __future__ import annotations

from fastapi import FastAPI

from services.dispatcher.api import (
    deliveries,
    feedback,
    offers,
    policy,
    preferences,
    templates,
    topics,
    tracking,
)
from shared.http import replay

ROUTERS = (
    tracking.router,
    templates.router,
    topics.router,
    preferences.router,
    policy.router,
    deliveries.router,
    feedback.router,
    offers.router,
    replay.router,
)


def install(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)
