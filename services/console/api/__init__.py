"""The console's pages, one module per group, and how failures become pages."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import Response

from services.console.api import (
    auth,
    customers,
    journeys,
    report,
    segments,
    settings,
    templates,
)
from services.console.api.deps import CsrfRefused, SignInRequired, render, sealer, see_other
from services.console.runtime import UpstreamError


def install(app: FastAPI) -> None:
    for module in (auth, customers, segments, templates, journeys, report, settings):
        app.include_router(module.router, include_in_schema=False)
    app.add_exception_handler(SignInRequired, _sign_in)  # type: ignore[arg-type]
    app.add_exception_handler(CsrfRefused, _csrf_refused)
    app.add_exception_handler(UpstreamError, _upstream_failed)  # type: ignore[arg-type]


async def _sign_in(request: Request, exc: SignInRequired) -> Response:
    return see_other(f"/login?next={quote(exc.next_path, safe='/')}")


async def _csrf_refused(request: Request, exc: Exception) -> Response:
    return render(
        request,
        "error.html",
        status_code=403,
        title="Refused",
        detail="This form is stale or did not come from the console (its CSRF token does "
        "not match your session). Go back, reload the page and try again.",
    )


async def _upstream_failed(request: Request, exc: UpstreamError) -> Response:
    if exc.status == 401:
        # the token no longer opens the services (rotated): sign in again
        response = see_other("/login?note=expired")
        sealer(request).end(response)
        return response
    status = exc.status if exc.status in (403, 404, 409, 422, 502) else 502
    return render(
        request,
        "error.html",
        status_code=status,
        title=f"The {exc.service} service answered {exc.status}",
        detail=exc.detail,
    )
