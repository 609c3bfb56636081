"""The console: web pages for people, on the five services' admin APIs.

Stateless: it reads and writes only through the services' public HTTP APIs (never
their tables), with the signed-in user's admin token as the bearer. Pages are rendered
on the server (Jinja2, autoescaped) with a little vanilla JavaScript, every asset served
from ``/static`` (nothing from the network). The pages are not part of the OpenAPI
document: they are for browsers, not programs (``/healthz``, ``/readyz`` and
``/metrics`` are, as in every service).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.console import api
from services.console.runtime import Runtime
from services.console.security import SecurityHeadersMiddleware
from services.console.session import SessionSealer
from services.console.settings import ConsoleSettings, get_settings
from shared.http.app import create_service_app

STATIC = Path(__file__).resolve().parent / "static"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime: Runtime = app.state.runtime
    await runtime.start(app)
    try:
        yield
    finally:
        await runtime.stop()


def create_app(settings: ConsoleSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = create_service_app(
        title="Tenure console",
        description="Web pages to find a customer, build a segment, write a message and run "
        "a journey, on the services' admin APIs.",
        version="1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    # built here, not in the lifespan: the session key must not change between requests
    runtime = Runtime(settings)
    app.state.runtime = runtime
    app.state.sealer = SessionSealer(
        runtime.session_key,
        max_age_s=settings.console.session_max_age_s,
        secure=settings.console.secure_cookie,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    api.install(app)
    return app
