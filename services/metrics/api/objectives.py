"""``/v1/objectives``: SMART objectives with their progress."""

from __future__ import annotations

from fastapi import APIRouter, Response

from services.metrics.api.deps import MAX_DAYS, RuntimeDep, reading
from services.metrics.objectives import with_progress
from services.metrics.repository import objectives as store
from services.metrics.schemas import ObjectiveCreate, ObjectivePublic
from shared.db.engine import driver_connection
from shared.http.admin import ADMIN
from shared.http.problems import Conflict, Invalid, NotFound, problems
from shared.ids import id_from_name

router = APIRouter(prefix="/v1/objectives", tags=["objectives"], dependencies=ADMIN)


@router.post("", status_code=201, responses=problems(409))
async def create_objective(body: ObjectiveCreate, runtime: RuntimeDep) -> ObjectivePublic:
    """Store a SMART objective; answers with its progress (409: an objective has this id)."""
    if (body.deadline - body.start).days > MAX_DAYS:
        raise Invalid(f"an objective may span at most {MAX_DAYS} days", loc=("body", "deadline"))
    objective = body.model_copy(update={"id": body.id or id_from_name(body.name, "objective")})
    async with runtime.engine.begin() as conn:
        if not await store.insert_objective(await driver_connection(conn), objective):
            raise Conflict(f"objective {objective.id!r} already exists")
    async with reading(runtime) as driver:
        return await with_progress(driver, objective, today=runtime.clock().date())


@router.get("")
async def list_objectives(runtime: RuntimeDep) -> list[ObjectivePublic]:
    today = runtime.clock().date()
    async with reading(runtime) as driver:
        return [
            await with_progress(driver, objective, today=today)
            for objective in await store.list_objectives(driver)
        ]


@router.get("/{objective_id}", responses=problems(404))
async def get_objective(objective_id: str, runtime: RuntimeDep) -> ObjectivePublic:
    async with reading(runtime) as driver:
        objective = await store.get_objective(driver, objective_id)
        if objective is None:
            raise NotFound(f"no objective {objective_id!r}")
        return await with_progress(driver, objective, today=runtime.clock().date())


@router.delete("/{objective_id}", status_code=204, responses=problems(404))
async def delete_objective(objective_id: str, runtime: RuntimeDep) -> Response:
    async with runtime.engine.begin() as conn:
        deleted = await store.delete_objective(await driver_connection(conn), objective_id)
    if not deleted:
        raise NotFound(f"no objective {objective_id!r}")
    return Response(status_code=204)
