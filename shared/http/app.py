"""The FastAPI app factory every service starts from.

It adds ``/healthz`` (the process answers), ``/readyz`` (every registered
dependency really answers: broker, database), ``/metrics`` and the request
context middleware. A service registers its readiness checks in its lifespan
with :func:`add_readiness_check`. Beside the service's own lifespan, a
:class:`~shared.memory.HeapTrimmer` returns freed heap memory to the OS every
``memory_trim_interval_s`` of the settings in ``app.state.settings``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response

from shared.http.body_limit import BodyLimitMiddleware
from shared.http.docs import install_local_docs
from shared.http.metrics import render_metrics
from shared.http.middleware import RequestContextMiddleware
from shared.http.nul import RefuseNulMiddleware
from shared.http.openapi import with_shared_answers
from shared.http.problems import install_problem_handlers
from shared.http.responses import json_response
from shared.http.timeouts import install_timeout_handlers
from shared.memory import HeapTrimmer
from shared.settings import DEFAULT_MEMORY_TRIM_INTERVAL_S

ReadinessCheck = Callable[[], Awaitable[None]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]
_CHECK_TIMEOUT_S = 3.0


def add_readiness_check(app: FastAPI, name: str, check: ReadinessCheck) -> None:
    app.state.readiness_checks[name] = check


def create_service_app(
    *, title: str, description: str, version: str, lifespan: Any, **kwargs: Any
) -> FastAPI:
    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=_with_heap_trimmer(lifespan),
        # FastAPI's native OpenTelemetry looks up the global providers on every request
        # (~8 us) to find none configured: services export Prometheus metrics instead
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,  # served from local assets instead (shared/http/docs.py)
        redoc_url=None,
        **kwargs,
    )
    install_local_docs(app)
    app.state.readiness_checks = {}
    app.add_middleware(BodyLimitMiddleware)  # inside the request context: 413s get ids
    app.add_middleware(RefuseNulMiddleware)
    app.add_middleware(RequestContextMiddleware)
    install_problem_handlers(app)
    install_timeout_handlers(app)  # a statement timeout: 503, not 500
    app.openapi = with_shared_answers(app.openapi)  # type: ignore[method-assign]
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["operations"])
    app.add_api_route("/readyz", readyz, methods=["GET"], tags=["operations"])
    app.add_api_route(
        "/metrics", metrics, methods=["GET"], tags=["operations"], response_class=Response
    )
    return app


def _with_heap_trimmer(lifespan: Lifespan) -> Lifespan:
    @asynccontextmanager
    async def trimmed(app: FastAPI) -> AsyncIterator[Any]:
        settings = getattr(app.state, "settings", None)
        interval = getattr(settings, "memory_trim_interval_s", DEFAULT_MEMORY_TRIM_INTERVAL_S)
        trimmer = HeapTrimmer(interval)
        task = asyncio.create_task(trimmer.run(), name="heap-trimmer")
        try:
            async with lifespan(app) as state:
                yield state
        finally:
            trimmer.signal_shutdown()
            await task

    return trimmed


async def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


async def readyz(request: Request) -> Response:
    """Every dependency answers now; 503 names the ones that do not."""
    checks: dict[str, ReadinessCheck] = request.app.state.readiness_checks
    results = await asyncio.gather(
        *(asyncio.wait_for(check(), _CHECK_TIMEOUT_S) for check in checks.values()),
        return_exceptions=True,
    )
    report = {
        name: "ok" if result is None else f"failed: {result!r}"
        for name, result in zip(checks, results, strict=True)
    }
    ready = all(result is None for result in results)
    return json_response(
        {"status": "ready" if ready else "not ready", "checks": report},
        status_code=200 if ready else 503,
    )


async def metrics() -> Response:
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)
