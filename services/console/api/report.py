"""The report inside the console: metrics' KPIs for a date range (activity per month,
monthly cohorts' retention, the messaging funnel per journey), the experiments and the
objectives with their progress, and a link to metrics' own charted report page."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.console.api.deps import RuntimeDep, SessionDep, render
from services.console.schemas import sections

router = APIRouter(prefix="/report")


def _day(text: str | None) -> str | None:
    """A ``YYYY-MM-DD`` from the form, or nothing (metrics' default range)."""
    if not text:
        return None
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        return None


@router.get("")
async def report(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    start: str | None = None,
    end: str | None = None,
    journey_id: str | None = None,
) -> Response:
    dates = {"from": _day(start), "to": _day(end)}
    funnel_params = dict(dates, group_by="journey_id", journey_id=journey_id or None)
    activity, funnel, cohorts, experiments, objectives = await sections(
        runtime.metrics.get("/v1/kpis/activity", token=session.token, period="month", **dates),
        runtime.metrics.get("/v1/kpis/funnel", token=session.token, **funnel_params),
        runtime.metrics.get(
            "/v1/kpis/cohorts", token=session.token, period="month", periods=6, **dates
        ),
        runtime.metrics.get("/v1/experiments", token=session.token, journey_id=journey_id or None),
        runtime.metrics.get("/v1/objectives", token=session.token),
    )
    return render(
        request,
        "report.html",
        activity=activity,
        funnel=funnel,
        cohorts=cohorts,
        experiments=experiments,
        objectives=objectives,
        start=dates["from"] or "",
        end=dates["to"] or "",
        journey_id=journey_id or "",
        metrics_report=f"{runtime.settings.console.metrics_url.rstrip('/')}/report",
    )
