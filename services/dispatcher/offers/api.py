"""``/v1/coupon-pools`` (admin): pools of unique codes and their uploads;
``/v1/offers/verify``: what a code is worth, for a checkout or a person."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from services.dispatcher import metrics
from services.dispatcher.offers import pools
from shared.http.admin import require_admin
from shared.http.nul_body import NulFree
from shared.offers import InvalidCode, normalise, verify

router = APIRouter(dependencies=[Depends(require_admin)], tags=["offers"])

PoolId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class _Model(NulFree):
    model_config = ConfigDict(extra="forbid")


class PoolCreate(_Model):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    name: str = Field(min_length=1, max_length=200)
    #: below this many free codes the pool alerts (TenureCouponPoolLow)
    low_water: int = Field(default=100, ge=0, le=2**31 - 1)  # PostgreSQL integer


class PoolPublic(_Model):
    id: str
    name: str
    low_water: int
    available: int
    issued: int
    created_at: datetime


class CodesUpload(_Model):
    codes: list[Code] = Field(min_length=1, max_length=100_000)


class Verify(_Model):
    code: str = Field(min_length=1, max_length=100)


def _public(stats: pools.PoolStats) -> PoolPublic:
    metrics.COUPONS_AVAILABLE.labels(stats.pool_id).set(stats.available)
    metrics.COUPON_LOW_WATER.labels(stats.pool_id).set(stats.low_water)
    return PoolPublic(
        id=stats.pool_id,
        name=stats.name,
        low_water=stats.low_water,
        available=stats.available,
        issued=stats.issued,
        created_at=stats.created_at,
    )


class Problem(BaseModel):
    """What a 404 or a 409 answers."""

    detail: str


@router.post(
    "/v1/coupon-pools",
    status_code=201,
    response_model=PoolPublic,
    responses={409: {"description": "a pool has this id", "model": Problem}},
)
async def create_pool(body: PoolCreate, request: Request) -> PoolPublic:
    runtime = request.app.state.runtime
    async with runtime.engine.begin() as conn:
        created = await pools.create_pool(
            conn, pool_id=body.id, name=body.name, low_water=body.low_water, now=runtime.clock()
        )
        if not created:
            raise HTTPException(409, detail=f"pool {body.id!r} exists")
        (stats,) = await pools.pool_stats(conn, pool_ids=[body.id])
    return _public(stats)


@router.get("/v1/coupon-pools", response_model=list[PoolPublic])
async def list_pools(request: Request) -> list[PoolPublic]:
    async with request.app.state.runtime.engine.connect() as conn:
        return [_public(s) for s in await pools.pool_stats(conn)]


@router.get("/v1/coupon-pools/{pool_id}", response_model=PoolPublic)
async def get_pool(pool_id: PoolId, request: Request) -> PoolPublic:
    async with request.app.state.runtime.engine.connect() as conn:
        found = await pools.pool_stats(conn, pool_ids=[pool_id])
    if not found:
        raise HTTPException(404, detail=f"no pool {pool_id!r}")
    return _public(found[0])


@router.post("/v1/coupon-pools/{pool_id}/codes", response_model=dict[str, int])
async def upload_codes(pool_id: PoolId, body: CodesUpload, request: Request) -> dict[str, int]:
    """Add codes to a pool (codes already in it are ignored): ``{"added", "available"}``."""
    async with request.app.state.runtime.engine.begin() as conn:
        if not await pools.pool_stats(conn, pool_ids=[pool_id]):
            raise HTTPException(404, detail=f"no pool {pool_id!r}")
        added = await pools.add_codes(conn, pool_id=pool_id, codes=body.codes)
        (stats,) = await pools.pool_stats(conn, pool_ids=[pool_id])
    _public(stats)
    return {"added": added, "available": stats.available}


@router.post("/v1/offers/verify")
async def verify_code(body: Verify, request: Request) -> dict[str, Any]:
    """A signed code's offer (checked offline with the keys), or a pool code's issue."""
    runtime = request.app.state.runtime
    keys = runtime.settings.dispatcher.offer_key_map
    today: date = runtime.clock().date()
    async with runtime.engine.connect() as conn:
        row = await pools.code_of(conn, code=body.code.strip())
    if row is not None:
        return {
            "valid": True,
            "kind": "pool",
            "pool": row["pool_id"],
            "issued": row["dispatch_id"] is not None,
            "dispatchId": row["dispatch_id"],
            "customerId": row["customer_id"],
        }
    try:
        checked = verify(body.code, keys=keys, today=today)
    except InvalidCode as exc:
        return {"valid": False, "reason": str(exc)}
    return {
        "valid": not checked.expired,
        "kind": "signed",
        "code": normalise(body.code),
        "valueKind": checked.offer.kind.name.lower(),
        "value": checked.offer.value,
        "expiresOn": checked.offer.expires_on.isoformat(),
        "expired": checked.expired,
    }
