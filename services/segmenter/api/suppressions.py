"""``/v1/suppressions``: ids whose events are dropped."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from services.segmenter.admin import suppressions
from services.segmenter.api.deps import RuntimeDep
from services.segmenter.schemas import SuppressionPublic, SuppressionRequest, SuppressionsPublic
from shared.http.admin import ADMIN
from shared.http.problems import problems

router = APIRouter(prefix="/v1/suppressions", tags=["suppressions"], dependencies=ADMIN)


@router.get("", response_model=SuppressionsPublic)
async def list_suppressions(
    runtime: RuntimeDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
) -> SuppressionsPublic:
    return await suppressions.list_suppressions(runtime, after=after, limit=limit)


@router.put("/{customer_id:path}", response_model=SuppressionPublic)
async def suppress_customer(
    customer_id: str, runtime: RuntimeDep, body: SuppressionRequest | None = None
) -> SuppressionPublic:
    """Drop every later event of this id (its profile, if any, stays as it is: erase it
    with ``DELETE /v1/profiles/{id}?suppress=true`` to drop both). Idempotent."""
    reason = body.reason if body is not None else "requested"
    return await suppressions.suppress_customer(runtime, customer_id, reason=reason)


@router.delete("/{customer_id:path}", status_code=204, responses=problems(404))
async def lift_suppression(customer_id: str, runtime: RuntimeDep) -> Response:
    """Accept this id's events again, from now on (dropped events are not replayed)."""
    await suppressions.lift_suppression(runtime, customer_id)
    return Response(status_code=204)
