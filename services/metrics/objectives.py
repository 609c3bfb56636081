"""SMART objectives: a metric, a target, a baseline and a deadline, with progress to
date and a projection of where the metric will be at the deadline (a least-squares
line through the values of the periods since the start)."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np

from services.metrics import queries
from services.metrics.periods import period_start, shift_period
from services.metrics.schemas import (
    ObjectiveCreate,
    ObjectivePoint,
    ObjectiveProgress,
    ObjectivePublic,
)


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
        rows = await queries.revenue(driver, kind=kind, start=start, end=end)  # zero-filled
        return [(r["period"], _float(r[metric])) for r in rows]
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
) -> ObjectiveProgress:
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
    return ObjectiveProgress(
        baseline=baseline,
        current=current,
        progress=share,
        projected_at_deadline=projected,
        on_track=on_track,
        series=[ObjectivePoint(period=p, value=v) for p, v in values],
    )


async def with_progress(driver: Any, objective: ObjectiveCreate, *, today: date) -> ObjectivePublic:
    """The objective with its progress to ``today`` (the baseline measured over the
    period before its start when it has none)."""
    end = min(today, objective.deadline)
    values = await series(driver, objective, start=objective.start, end=max(end, objective.start))
    baseline = objective.baseline
    if baseline is None:
        kind = objective.period
        before = shift_period(kind, period_start(kind, objective.start), -1)
        measured = await series(driver, objective, start=before, end=before)
        baseline = measured[0][1] if measured else None
    return ObjectivePublic.model_validate(
        {**objective.model_dump(), **progress(objective, values, baseline).model_dump()}
    )


def _periods_between(kind: str, start: date, end: date) -> int:
    if kind == "week":
        return (end - start).days // 7
    return (end.year - start.year) * 12 + end.month - start.month
