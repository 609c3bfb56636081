"""``/v1/kpis``: customer KPIs (activity, cohorts, revenue, customer value),
satisfaction, the messaging funnel, journey uplift and segment flows."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.metrics import queries
from services.metrics.api.deps import FromQ, RuntimeDep, ToQ, check_order, date_range, reading
from services.metrics.schemas import (
    ActivityPublic,
    CohortKind,
    CohortsPublic,
    CustomerValuePublic,
    FunnelPublic,
    PeriodKind,
    RevenuePublic,
    SatisfactionPublic,
    SegmentsPublic,
    UpliftPublic,
)
from shared.http.admin import ADMIN
from shared.http.problems import Invalid

router = APIRouter(prefix="/v1/kpis", tags=["kpis"], dependencies=ADMIN)


@router.get("/activity")
async def activity(
    runtime: RuntimeDep, start: FromQ = None, end: ToQ = None, period: PeriodKind = "month"
) -> ActivityPublic:
    """Active customers per period, with retention and churn against the period before."""
    start, end = date_range(runtime, start, end, 365 if period == "month" else 90)
    async with reading(runtime) as driver:
        rows = await queries.activity(driver, kind=period, start=start, end=end)
    return ActivityPublic.model_validate(
        {"period": period, "from": start, "to": end, "periods": rows}
    )


@router.get("/cohorts")
async def cohorts(
    runtime: RuntimeDep,
    start: FromQ = None,
    end: ToQ = None,
    period: CohortKind = "month",
    periods: Annotated[int, Query(ge=1, le=52)] = 12,
) -> CohortsPublic:
    """Cohort retention: customers first seen in a period, and the share active in each
    of the following ``periods`` periods."""
    start, end = date_range(runtime, start, end, 365 if period == "month" else 84)
    async with reading(runtime) as driver:
        rows = await queries.cohorts(driver, kind=period, start=start, end=end, periods=periods)
    return CohortsPublic.model_validate(
        {"period": period, "from": start, "to": end, "cohorts": rows}
    )


@router.get("/revenue")
async def revenue(
    runtime: RuntimeDep, start: FromQ = None, end: ToQ = None, period: PeriodKind = "month"
) -> RevenuePublic:
    """Revenue, orders, AOV, revenue per active customer and LTV to date per period
    (every period of the range, as ``/activity``)."""
    start, end = date_range(runtime, start, end, 365 if period == "month" else 90)
    async with reading(runtime) as driver:
        rows = await queries.revenue(driver, kind=period, start=start, end=end)
    return RevenuePublic.model_validate(
        {"period": period, "from": start, "to": end, "periods": rows}
    )


@router.get("/customers")
async def customer_value(
    runtime: RuntimeDep, start: FromQ = None, end: ToQ = None, cohort: CohortKind = "month"
) -> CustomerValuePublic:
    """Repeat-purchase rate, revenue and LTV per customer, overall and per cohort
    (cohorts first seen between ``from`` and ``to``; all when omitted)."""
    check_order(start, end)
    async with reading(runtime) as driver:
        answer = await queries.customer_value(driver, kind=cohort, start=start, end=end)
    return CustomerValuePublic.model_validate(answer)


@router.get("/satisfaction")
async def satisfaction(
    runtime: RuntimeDep, start: FromQ = None, end: ToQ = None, journey_id: str | None = None
) -> SatisfactionPublic:
    """NPS and CSAT from ``Survey Answered`` events."""
    start, end = date_range(runtime, start, end, 90)
    async with reading(runtime) as driver:
        answer = await queries.satisfaction(driver, start=start, end=end, journey_id=journey_id)
    return SatisfactionPublic.model_validate(
        {"from": start, "to": end, "journey_id": journey_id, **answer}
    )


@router.get("/funnel")
async def funnel(
    runtime: RuntimeDep,
    start: FromQ = None,
    end: ToQ = None,
    journey_id: str | None = None,
    step_id: str | None = None,
    variant: str | None = None,
    channel: str | None = None,
    group_by: Annotated[
        str, Query(description="comma-separated: day, journey_id, step_id, variant, channel")
    ] = "journey_id",
) -> FunnelPublic:
    """The messaging funnel (requested → sent → delivered → opened → clicked →
    converted, with deferrals, suppressions by reason, failures, bounces, unsubscribes)."""
    start, end = date_range(runtime, start, end, 30)
    dims = [d.strip() for d in group_by.split(",") if d.strip()]
    unknown = sorted(set(dims) - set(queries.FUNNEL_DIMENSIONS))
    if unknown:
        raise Invalid(
            f"cannot group by {', '.join(unknown)}; "
            f"choose among {', '.join(queries.FUNNEL_DIMENSIONS)}",
            loc=("query", "group_by"),
        )
    filters = {"journey_id": journey_id, "step_id": step_id, "variant": variant, "channel": channel}
    async with reading(runtime) as driver:
        rows = await queries.funnel(driver, start=start, end=end, filters=filters, group_by=dims)
    return FunnelPublic.model_validate(
        {"from": start, "to": end, "group_by": dims, "filters": filters, "rows": rows}
    )


@router.get("/uplift/{journey_id}")
async def uplift(
    journey_id: str,
    runtime: RuntimeDep,
    retention_days: Annotated[int, Query(ge=1, le=365)] = 30,
) -> UpliftPublic:
    """Entrants against the holdout, on conversion and on retention."""
    async with reading(runtime) as driver:
        answer = await queries.uplift(driver, journey_id=journey_id, retention_days=retention_days)
    return UpliftPublic.model_validate(answer)


@router.get("/segments")
async def segments(
    runtime: RuntimeDep, start: FromQ = None, end: ToQ = None, segment_id: str | None = None
) -> SegmentsPublic:
    """Entries into and exits from segments per day."""
    start, end = date_range(runtime, start, end, 30)
    async with reading(runtime) as driver:
        rows = await queries.segment_flows(driver, start=start, end=end, segment_id=segment_id)
    return SegmentsPublic.model_validate({"from": start, "to": end, "days": rows})
