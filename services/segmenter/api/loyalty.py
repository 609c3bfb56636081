"""``/v1/loyalty``: the program document, a customer's balance, tier and history,
redemptions, and the refresh of every standing (expiries, a changed program)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from services.segmenter.admin import loyalty
from services.segmenter.api.deps import RuntimeDep
from services.segmenter.loyalty_rules import Program
from services.segmenter.schemas import (
    RedemptionCreate,
    RedemptionPublic,
    RefreshPublic,
    StandingPublic,
)
from shared.http.admin import ADMIN
from shared.http.problems import problems

router = APIRouter(prefix="/v1/loyalty", tags=["loyalty"], dependencies=ADMIN)
CustomerId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]


@router.get("/program", response_model=Program, responses=problems(404))
async def get_program(runtime: RuntimeDep) -> Program:
    return await loyalty.get_program(runtime)


@router.put("/program", response_model=Program)
async def put_program(program: Program, runtime: RuntimeDep) -> Program:
    """Set the program: earning rules, tiers, expiry. Events earn under it from now
    on; ``POST /v1/loyalty/refresh`` recomputes every balance and tier."""
    return await loyalty.put_program(runtime, program)


@router.post("/refresh", response_model=RefreshPublic)
async def refresh(runtime: RuntimeDep) -> RefreshPublic:
    """Recompute every balance and tier now (the daily job does it for expiries)."""
    return await loyalty.refresh(runtime)


@router.get("/{customer_id:path}", response_model=StandingPublic, responses=problems(404))
async def get_standing(customer_id: CustomerId, runtime: RuntimeDep) -> StandingPublic:
    """Balance, tier, the way to the next tier, and the ledger (newest first)."""
    return await loyalty.get_standing(runtime, customer_id)


@router.post(
    "/{customer_id:path}/redemptions",
    status_code=201,
    response_model=RedemptionPublic,
    responses={
        200: {"description": "this redemption id was already applied", "model": RedemptionPublic},
        **problems(404, 409),
    },
)
async def redeem(
    customer_id: CustomerId, body: RedemptionCreate, runtime: RuntimeDep, response: Response
) -> RedemptionPublic:
    """Spend points (oldest first). Idempotent by ``id``: a retry spends nothing (200).
    409 when the balance is short."""
    answer, applied = await loyalty.redeem(runtime, customer_id, body)
    if not applied:
        response.status_code = 200
    return answer
