"""``/v1/runs`` and ``/v1/customers/{id}/runs``: a run, stopping it, a customer's runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.journey import repository as repo
from services.journey.api.deps import RuntimeDep
from services.journey.api.journeys import run_public
from services.journey.machine import Stop
from services.journey.schemas import (
    RunPublic,
    RunsPublic,
    RunStepPublic,
    StopRequest,
)
from shared.db.engine import snapshot
from shared.events.journey_runs import ExitReason
from shared.http.admin import ADMIN
from shared.http.problems import NotFound, problems

router = APIRouter(prefix="/v1/runs", tags=["runs"], dependencies=ADMIN)
customers_router = APIRouter(prefix="/v1/customers", tags=["runs"], dependencies=ADMIN)


@router.get("/{run_id}", response_model=RunPublic, responses=problems(404))
async def get_run(run_id: str, runtime: RuntimeDep) -> RunPublic:
    async with runtime.engine.connect() as conn:
        run = await repo.get_run(conn, run_id=run_id)
    if run is None:
        raise NotFound(f"no run {run_id!r}")
    return run_public(run)


@router.post("/{run_id}/stop", response_model=RunPublic, responses=problems(404))
async def stop_run(run_id: str, runtime: RuntimeDep, body: StopRequest | None = None) -> RunPublic:
    """End a run now (``exited`` with reason ``stopped``); a run already ended is
    answered as it is."""
    detail = body.detail if body is not None else None
    stopped = await runtime.apply_to_runs([run_id], Stop(ExitReason.STOPPED, detail))
    if not stopped:
        raise NotFound(f"no run {run_id!r}")
    return run_public(stopped[0])


@customers_router.get("/{customer_id:path}/runs", response_model=RunsPublic)
async def customer_runs(
    customer_id: str,
    runtime: RuntimeDep,
    status: Annotated[str | None, Query(pattern="^(active|exited)$")] = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
    steps: Annotated[bool, Query(description="each run with its step history")] = False,
) -> RunsPublic:
    """A customer's runs of every journey (with ``steps``: each run's history, in one
    more query for the page)."""
    async with snapshot(runtime.engine) as conn:
        found = await repo.list_runs(
            conn, customer_id=customer_id, status=status, after=after, limit=limit
        )
        history = await repo.steps_of(conn, run_ids=[r.run_id for r in found]) if steps else {}
    public = [run_public(r) for r in found]
    if steps:
        for run in public:
            run.steps = [
                RunStepPublic.model_validate(row, from_attributes=True)
                for row in history.get(run.run_id, [])
            ]
    return RunsPublic(
        runs=public,
        next_after=found[-1].run_id if len(found) == limit else None,
    )
