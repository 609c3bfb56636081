"""The report: ``/v1/report`` (everything the page draws, in one answer), the page
itself (``/report``) and its scripts (``/static/{name}``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse, HTMLResponse

from services.metrics import queries
from services.metrics.api.deps import FromQ, RuntimeDep, ToQ, date_range, reading
from services.metrics.api.experiments import experiment_public
from services.metrics.objectives import with_progress
from services.metrics.repository import experiments as experiment_store
from services.metrics.repository import objectives as objective_store
from services.metrics.schemas import ReportPublic
from shared.http.admin import ADMIN
from shared.http.problems import NotFound, problems
from shared.validation import SafeStr

STATIC = Path(__file__).resolve().parent.parent / "static"
#: the files ``/static/{name}`` serves, and their media types
STATIC_FILES = {"report.js": "text/javascript", "chart.umd.min.js": "text/javascript"}
#: the page's policy, sent as a header too: the meta tag cannot forbid framing
#: (``frame-ancestors``) and a header holds even if the HTML is ever served altered
REPORT_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'; frame-ancestors 'none'"
)
#: headers on the page and its scripts
PAGE_HEADERS = {
    "Content-Security-Policy": REPORT_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(prefix="/v1/report", tags=["report"], dependencies=ADMIN)
#: the page and its scripts: no token (the page asks for it and sends it to /v1/report)
page_router = APIRouter(tags=["report"])


@router.get("")
async def report_data(
    runtime: RuntimeDep,
    start: FromQ = None,
    end: ToQ = None,
    journey_id: Annotated[
        SafeStr | None,
        Query(max_length=200, description="only this journey's funnel, satisfaction and tests"),
    ] = None,
) -> ReportPublic:
    """Everything the report page draws, in one answer (default: the last 12 months).

    ``journey_id`` narrows what belongs to a journey (the funnel, satisfaction and the
    experiments); cohorts, activity, revenue, customer value and objectives describe the
    whole base and stay whole."""
    start, end = date_range(runtime, start, end, 365)
    today = runtime.clock().date()
    async with reading(runtime) as driver:
        funnel = await queries.funnel(
            driver,
            start=end - timedelta(days=30),
            end=end,
            filters={"journey_id": journey_id},
            group_by=["journey_id"],
        )
        cohorts = await queries.cohorts(driver, kind="month", start=start, end=end, periods=12)
        activity = await queries.activity(driver, kind="month", start=start, end=end)
        revenue = await queries.revenue(driver, kind="month", start=start, end=end)
        customers = await queries.customer_value(driver, kind="month", start=None, end=None)
        satisfaction = await queries.satisfaction(
            driver, start=end - timedelta(days=90), end=end, journey_id=journey_id
        )
        experiments = await experiment_store.list_experiments(driver, journey_id=journey_id)
        objectives = [
            await with_progress(driver, objective, today=today)
            for objective in await objective_store.list_objectives(driver)
        ]
    return ReportPublic.model_validate(
        {
            "generated_at": runtime.clock(),
            "from": start,
            "to": end,
            "funnel": funnel,
            "cohorts": cohorts,
            "activity": activity,
            "revenue": revenue,
            "customers": customers,
            "satisfaction": satisfaction,
            "experiments": [experiment_public(r) for r in experiments],
            "objectives": objectives,
        }
    )


@page_router.get("/report", response_class=HTMLResponse)
async def report_page() -> FileResponse:
    """The report: static HTML and a vendored chart library; the data comes from
    ``/v1/report`` with the token the page asks for (kept in the browser)."""
    return FileResponse(STATIC / "report.html", media_type="text/html", headers=PAGE_HEADERS)


@page_router.get(
    "/static/{name}",
    response_class=Response,
    responses={
        200: {"content": {"text/javascript": {"schema": {"type": "string"}}}},
        **problems(404),
    },
)
async def static_file(name: str) -> FileResponse:
    if name not in STATIC_FILES:
        raise NotFound(f"no file {name!r}")
    return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers=PAGE_HEADERS)
