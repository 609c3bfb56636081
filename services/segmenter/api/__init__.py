"""The segmenter's admin HTTP API: one router per resource, the errors of the
operations answered as JSON (``{"detail": …}``, as ``HTTPException`` answers)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.segmenter.api import (
    loyalty,
    profiles,
    recommendations,
    scores,
    segments,
    suppressions,
)
from services.segmenter.errors import Conflict, InvalidRule, NotFound, SegmenterError

ROUTERS = (
    segments.router,
    profiles.router,
    suppressions.router,
    scores.router,
    recommendations.router,
    loyalty.router,
)


def install(app: FastAPI) -> None:
    """Add the routers and the answers to :mod:`services.segmenter.errors`."""
    for router in ROUTERS:
        app.include_router(router)
    app.add_exception_handler(SegmenterError, _answer)  # type: ignore[arg-type]


async def _answer(request: Request, exc: SegmenterError) -> JSONResponse:
    if isinstance(exc, InvalidRule):
        detail = [{"loc": list(exc.loc), "msg": exc.detail, "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422)
    status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 400
    return JSONResponse({"detail": exc.detail}, status_code=status)
