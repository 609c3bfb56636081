"""``/v1/coupon-pools``: pools of unique codes and their uploads; ``/v1/offers/verify``:
what a code is worth, for a checkout or a person."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from services.dispatcher import metrics
from services.dispatcher.api.deps import RuntimeDep
from services.dispatcher.offers import pools
from services.dispatcher.schemas import (
    POOL_ID_PATTERN,
    CodeCheck,
    CodePublic,
    CodesCreate,
    CodesPublic,
    PoolCreate,
    PoolPublic,
)
from shared.http.admin import ADMIN
from shared.http.problems import problems
from shared.offers import InvalidCode, normalise, verify

router = APIRouter(prefix="/v1", tags=["offers"], dependencies=ADMIN)

PoolId = Annotated[str, Path(min_length=1, max_length=64, pattern=POOL_ID_PATTERN)]


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


@router.post(
    "/coupon-pools", status_code=201, response_model=PoolPublic, responses=problems(409, 422)
)
async def create_pool(body: PoolCreate, runtime: RuntimeDep) -> PoolPublic:
    """A new pool; 409 when a pool has this id."""
    stats = await pools.create_pool_once(
        runtime.engine,
        pool_id=body.id,
        name=body.name,
        low_water=body.low_water,
        now=runtime.clock(),
    )
    return _public(stats)


@router.get("/coupon-pools", response_model=list[PoolPublic])
async def list_pools(runtime: RuntimeDep) -> list[PoolPublic]:
    async with runtime.engine.connect() as conn:
        return [_public(s) for s in await pools.pool_stats(conn)]


@router.get("/coupon-pools/{pool_id}", response_model=PoolPublic, responses=problems(404))
async def get_pool(pool_id: PoolId, runtime: RuntimeDep) -> PoolPublic:
    return _public(await pools.one_pool(runtime.engine, pool_id=pool_id))


@router.post(
    "/coupon-pools/{pool_id}/codes", response_model=CodesPublic, responses=problems(404, 422)
)
async def upload_codes(pool_id: PoolId, body: CodesCreate, runtime: RuntimeDep) -> CodesPublic:
    """Add codes to a pool (codes already in it are ignored)."""
    added, stats = await pools.upload_codes(runtime.engine, pool_id=pool_id, codes=body.codes)
    _public(stats)
    return CodesPublic(added=added, available=stats.available)


@router.post(
    "/offers/verify",
    response_model=CodePublic,
    response_model_exclude_none=True,
    responses=problems(422),
)
async def verify_code(body: CodeCheck, runtime: RuntimeDep) -> CodePublic:
    """A signed code's offer (checked offline with the keys), or a pool code's issue."""
    keys = runtime.settings.dispatcher.offer_key_map
    async with runtime.engine.connect() as conn:
        row = await pools.code_of(conn, code=body.code.strip())
    if row is not None:
        return CodePublic(
            valid=True,
            kind="pool",
            pool=row["pool_id"],
            issued=row["dispatch_id"] is not None,
            dispatch_id=row["dispatch_id"],
            customer_id=row["customer_id"],
        )
    try:
        checked = verify(body.code, keys=keys, today=runtime.clock().date())
    except InvalidCode as exc:
        return CodePublic(valid=False, reason=str(exc))
    return CodePublic(
        valid=not checked.expired,
        kind="signed",
        code=normalise(body.code),
        value_kind=checked.offer.kind.name.lower(),
        value=checked.offer.value,
        expires_on=checked.offer.expires_on.isoformat(),
        expired=checked.expired,
    )
