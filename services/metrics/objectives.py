"""SMART objectives: a metric, a target, a baseline and a deadline, with progress to
date and a projection of where the metric will be at the deadline (a least-squares
line through the values of the periods since the start)."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from services.metrics import queries
from services.metrics.periods import shift_period
from shared.http.nul_body import NulFree

ObjectiveMetric = Literal[
    "churn_rate",
    "retention_rate",
    "active_customers",
    "revenue",
    "average_order_value",
    "conversion_rate",
    "nps",
    "csat",
]
#: metrics that can be narrowed to one journey
JOURNEY_METRICS = frozenset({"conversion_rate", "nps", "csat"})


class ObjectiveCreate(NulFree):
    id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=200)
    metric: ObjectiveMetric
    period: Literal["week", "month"] = "month"
    target: float
    #: the value at the start; measured over the period before ``start`` when omitted
    baseline: float | None = None
    start: date
    deadline: date
    journey_id: str | None = Field(default=None, min_length=1)
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ObjectiveCreate:
        if self.deadline <= self.start:
            raise ValueError("deadline must be after start")
        if self.journey_id is not None and self.metric not in JOURNEY_METRICS:
            raise ValueError(
                f"only {', '.join(sorted(JOURNEY_METRICS))} can be narrowed to a journey"
            )
        if self.metric == "conversion_rate" and self.journey_id is None:
            raise ValueError("conversion_rate needs a journey_id")
        return self


async def series(
    driver: Any, objective: ObjectiveCreate, *, start: date, end: date
) -> list[tuple[date, float | None]]:
    """The metric's value per period from ``start`` to ``end``."""
    kind = objective.period
    metric = objective.metric
    if metric in ("churn_rate", "retention_rate", "active_customers"):
        rows = await queries.activity(driver, kind=kind, start=start, end=end)
        key = {"active_customers": "active"}.get(metric, metric)
        return [(r["period"], _float(r[key])) for r in rows]
    if metric in ("revenue", "average_order_value"):
        rows = await queries.revenue(driver, kind=kind, start=start, end=end)
        values = {r["period"]: _float(r[metric]) for r in rows}
        periods = [
            r["period"] for r in await queries.activity(driver, kind=kind, start=start, end=end)
        ]
        return [(p, values.get(p, 0.0 if metric == "revenue" else None)) for p in periods]
    result: list[tuple[date, float | None]] = []
    for row in await queries.activity(driver, kind=kind, start=start, end=end):
        period = row["period"]
        last = shift_period(kind, period, 1)
        if metric == "conversion_rate":
            groups = await queries.funnel(
                driver,
                start=period,
                end=last,
                filters={"journey_id": objective.journey_id},
                group_by=[],
            )
            value = groups[0]["rates"]["conversion_rate"] if groups else None
        else:
            answers = await queries.satisfaction(
                driver, start=period, end=last, journey_id=objective.journey_id
            )
            value = answers[metric]
        result.append((period, value))
    return result


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def progress(
    objective: ObjectiveCreate,
    values: list[tuple[date, float | None]],
    baseline: float | None,
) -> dict[str, Any]:
    """Where the metric stands against the target, and where the trend leads."""
    known = [(i, v) for i, (_, v) in enumerate(values) if v is not None]
    current = known[-1][1] if known else None
    share = None
    if current is not None and baseline is not None and objective.target != baseline:
        share = (current - baseline) / (objective.target - baseline)
    projected = None
    if len(known) >= 2:
        xs = np.array([i for i, _ in known], dtype=float)
        ys = np.array([v for _, v in known], dtype=float)
        slope, intercept = np.polyfit(xs, ys, 1)
        periods = _periods_between(objective.period, objective.start, objective.deadline)
        projected = float(intercept + slope * periods)
    elif current is not None:
        projected = current
    decreasing = baseline is not None and objective.target < baseline
    on_track = None
    if projected is not None:
        on_track = projected <= objective.target if decreasing else projected >= objective.target
    return {
        "baseline": baseline,
        "current": current,
        "progress": share,
        "projected_at_deadline": projected,
        "on_track": on_track,
        "series": [{"period": p, "value": v} for p, v in values],
    }


def _periods_between(kind: str, start: date, end: date) -> int:
    if kind == "week":
        return (end - start).days // 7
    return (end.year - start.year) * 12 + end.month - start.month
