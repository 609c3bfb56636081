"""``/v1/policy``: frequency caps, quiet hours, the default timezone, the best-time
threshold."""

from __future__ import annotations

from fastapi import APIRouter

from services.dispatcher import repository as repo
from services.dispatcher.api.deps import RuntimeDep
from services.dispatcher.policy import SendPolicy
from shared.http.admin import ADMIN
from shared.http.problems import problems

router = APIRouter(prefix="/v1/policy", tags=["policy"], dependencies=ADMIN)


@router.get("", response_model=SendPolicy)
async def get_policy(runtime: RuntimeDep) -> SendPolicy:
    async with runtime.engine.connect() as conn:
        return await repo.load_policy(conn)


@router.put("", response_model=SendPolicy, responses=problems(422))
async def put_policy(body: SendPolicy, runtime: RuntimeDep) -> SendPolicy:
    async with runtime.engine.begin() as conn:
        await repo.save_policy(conn, document=body, now=runtime.clock())
    return body
