"""``/v1/loyalty``: the program document, a customer's balance, tier and history,
redemptions, and the refresh of every standing (expiries, a changed program)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.params import Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from services.segmenter.loyalty import store
from services.segmenter.loyalty.job import refresh_all
from services.segmenter.loyalty.rules import Program, standing
from services.segmenter.recommend.job import publish_profiles
from services.segmenter.schemas import Problem
from shared.db.driver import fetch

CustomerId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class EntryPublic(_Camel):
    source_id: str
    rule_id: str
    at: datetime
    points: int
    expires_at: datetime | None
    event: str | None


class StandingPublic(_Camel):
    customer_id: str
    points: int
    tier: str
    next_tier: str | None
    points_to_next_tier: int | None
    qualifying_points: int
    expired: int
    expiring_within_30_days: int
    history: list[EntryPublic]
    expiries: list[dict[str, Any]]


class RedemptionIn(_Camel):
    id: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00]+$")
    points: int = Field(ge=1, le=100_000_000)


NO_PROGRAM: dict[int | str, dict[str, Any]] = {
    404: {"description": "no loyalty program yet", "model": Problem}
}


def build_router(dependencies: Sequence[Depends]) -> APIRouter:
    router = APIRouter(prefix="/v1/loyalty", tags=["loyalty"], dependencies=list(dependencies))

    async def program_or_404(conn: Any) -> Program:
        program = await store.get_program(conn)
        if program is None:
            raise HTTPException(404, detail="no loyalty program: PUT /v1/loyalty/program first")
        return program

    @router.get("/program", response_model=Program, responses=NO_PROGRAM)
    async def get_program(request: Request) -> Program:
        async with request.app.state.runtime.engine.connect() as conn:
            return await program_or_404(conn)

    @router.put("/program", response_model=Program)
    async def put_program(program: Program, request: Request) -> Program:
        """Set the program: earning rules, tiers, expiry. Events earn under it from now
        on; ``POST /v1/loyalty/refresh`` recomputes every balance and tier."""
        runtime = request.app.state.runtime
        async with runtime.engine.begin() as conn:
            await store.put_program(conn, program=program, now=runtime.clock())
        runtime.loyalty.invalidate()
        return program

    @router.post("/refresh")
    async def refresh(request: Request) -> dict[str, int]:
        """Recompute every balance and tier now (the daily job does it for expiries)."""
        runtime = request.app.state.runtime
        changed = await refresh_all(runtime.engine, catalogs=runtime.catalogs, now=runtime.clock())
        runtime.relay.notify()
        return {"changed": changed}

    @router.get("/{customer_id}", response_model=StandingPublic, responses=NO_PROGRAM)
    async def get_standing(customer_id: CustomerId, request: Request) -> StandingPublic:
        """Balance, tier, the way to the next tier, and the ledger (newest first)."""
        runtime = request.app.state.runtime
        async with runtime.engine.connect() as conn:
            program = await program_or_404(conn)
            ledger = (await store.ledger_of(conn, ids=[customer_id])).get(customer_id, [])
            rows = await store.history(conn, customer_id=customer_id)
        result = standing(program, ledger, now=runtime.clock())
        return StandingPublic(
            customer_id=customer_id,
            points=result.balance,
            tier=result.tier.name,
            next_tier=result.next_tier.name if result.next_tier else None,
            points_to_next_tier=(
                result.next_tier.min_points - result.earned_qualifying if result.next_tier else None
            ),
            qualifying_points=result.earned_qualifying,
            expired=result.expired,
            expiring_within_30_days=result.expiring_soon,
            history=[
                EntryPublic(
                    source_id=r[0], rule_id=r[1], at=r[2], points=r[3], expires_at=r[4], event=r[5]
                )
                for r in rows
            ],
            expiries=[{"at": at.isoformat(), "points": p} for at, p in result.expiries],
        )

    @router.post(
        "/{customer_id}/redemptions",
        status_code=201,
        responses={
            200: {"description": "this redemption id was already applied"},
            409: {"description": "not enough points", "model": Problem},
            **NO_PROGRAM,
        },
    )
    async def redeem(customer_id: CustomerId, body: RedemptionIn, request: Request) -> Any:
        """Spend points (oldest first). Idempotent by ``id``: a retry spends nothing."""
        runtime = request.app.state.runtime
        now = runtime.clock()
        async with runtime.engine.begin() as conn:
            program = await program_or_404(conn)
            # the profile row orders this with the consumer's batches for the customer
            await fetch(
                conn,
                "SELECT 1 FROM segmenter.profiles WHERE customer_id = $1 FOR UPDATE",
                customer_id,
            )
            ledger = (await store.ledger_of(conn, ids=[customer_id])).get(customer_id, [])
            balance = standing(program, ledger, now=now).balance
            applied = await store.redeem(
                conn, customer_id=customer_id, redemption_id=body.id, points=body.points, now=now
            )
            if applied and body.points > balance:
                raise HTTPException(
                    409, detail=f"{customer_id!r} has {balance} points, {body.points} asked"
                )
            changed = await store.refresh_standings(
                conn, program=program, ids=[customer_id], now=now
            )
            if changed:
                await publish_profiles(conn, ids=list(changed), now=now)
        runtime.relay.notify()
        held = changed.get(customer_id)
        body_out = {
            "customerId": customer_id,
            "redemptionId": body.id,
            "points": held.points if held else balance,
        }
        return JSONResponse(body_out, status_code=201 if applied else 200)

    return router
