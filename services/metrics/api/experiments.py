"""``/v1/experiments``: every split and holdout seen in ``journey.runs``, its verdict,
its control; evaluation on demand."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.metrics.api.deps import RuntimeDep, VersionP, reading
from services.metrics.experiments import plan_experiment
from services.metrics.repository import experiments as store
from services.metrics.schemas import (
    EvaluatePublic,
    ExperimentPlan,
    ExperimentPublic,
    ExperimentUpdate,
)
from shared.db.engine import driver_connection
from shared.http.admin import ADMIN
from shared.http.problems import Invalid, NotFound, problems

router = APIRouter(prefix="/v1/experiments", tags=["experiments"], dependencies=ADMIN)


def experiment_public(row: store.ExperimentRow) -> ExperimentPublic:
    return ExperimentPublic(
        journey_id=row.journey_id,
        journey_version=row.journey_version,
        step_id=row.step_id,
        kind="holdout" if row.kind == "holdout" else "split",
        control=row.control,
        verdict=row.verdict,
        winner=row.winner,
        p_value=row.p_value,
        result=row.result,
        evaluated_at=row.evaluated_at,
        decision_id=row.decision_id,
        decided_at=row.decided_at,
    )


def _missing(journey_id: str, journey_version: int, step_id: str) -> NotFound:
    return NotFound(f"no experiment at step {step_id!r} of {journey_id!r} v{journey_version}")


@router.get("")
async def list_experiments(
    runtime: RuntimeDep, journey_id: str | None = None
) -> list[ExperimentPublic]:
    """Every split and holdout seen in ``journey.runs``, with its last verdict."""
    async with reading(runtime) as driver:
        rows = await store.list_experiments(driver, journey_id=journey_id)
    return [experiment_public(r) for r in rows]


@router.post("/evaluate")
async def evaluate_now(runtime: RuntimeDep) -> EvaluatePublic:
    """Evaluate every experiment now (it also happens every ``evaluate_interval_s``)."""
    return EvaluatePublic(decisions_enqueued=await runtime.evaluate())


@router.get("/{journey_id}/{journey_version}/{step_id}", responses=problems(404, 422))
async def get_experiment(
    journey_id: str,
    journey_version: VersionP,
    step_id: str,
    runtime: RuntimeDep,
    mde: Annotated[
        float | None,
        Query(
            gt=0,
            le=10,
            description="minimum detectable effect, relative to control's rate (0.1 = +10 %): "
            "adds `plan`, how many more users per arm the sequential test expects to need",
        ),
    ] = None,
    baseline: Annotated[
        float | None,
        Query(gt=0, lt=1, description="the base rate to plan from (default: control's so far)"),
    ] = None,
) -> ExperimentPublic:
    async with reading(runtime) as driver:
        row = await store.get_experiment(
            driver, journey_id=journey_id, journey_version=journey_version, step_id=step_id
        )
    if row is None:
        raise _missing(journey_id, journey_version, step_id)
    answer = experiment_public(row)
    if mde is not None:
        try:
            found = plan_experiment(row.result, mde=mde, policy=runtime.policy, baseline=baseline)
        except ValueError as exc:
            raise Invalid(str(exc), loc=("query", "mde")) from None
        answer.plan = ExperimentPlan.model_validate(found)
    return answer


@router.patch("/{journey_id}/{journey_version}/{step_id}", responses=problems(404))
async def update_experiment(
    journey_id: str,
    journey_version: VersionP,
    step_id: str,
    body: ExperimentUpdate,
    runtime: RuntimeDep,
) -> ExperimentPublic:
    """Choose the variant the others are compared with (the sequential test's running
    minima start again), then evaluate at once."""
    async with runtime.engine.begin() as conn:
        driver = await driver_connection(conn)
        if not await store.has_variant(
            driver,
            journey_id=journey_id,
            journey_version=journey_version,
            step_id=step_id,
            variant=body.control,
        ):
            raise Invalid(
                f"no variant {body.control!r} in this experiment", loc=("body", "control")
            )
        if not await store.set_control(
            driver,
            journey_id=journey_id,
            journey_version=journey_version,
            step_id=step_id,
            control=body.control,
        ):
            raise _missing(journey_id, journey_version, step_id)
    await runtime.evaluate()
    return await get_experiment(journey_id, journey_version, step_id, runtime)
