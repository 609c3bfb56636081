"""Suppressions: ids whose events are dropped."""

from __future__ import annotations

from services.segmenter import repository as repo
from services.segmenter.errors import NotFound
from services.segmenter.runtime import Runtime
from services.segmenter.schemas import SuppressionPublic, SuppressionsPublic
from shared.db.engine import snapshot


async def list_suppressions(
    runtime: Runtime, *, after: str | None, limit: int
) -> SuppressionsPublic:
    async with snapshot(runtime.engine) as conn:
        rows = await repo.suppressions_page(conn, after=after, limit=limit)
    return SuppressionsPublic(
        suppressions=[
            SuppressionPublic(
                customer_id=r.customer_id, suppressed_at=r.suppressed_at, reason=r.reason
            )
            for r in rows
        ],
        next_after=rows[-1].customer_id if len(rows) == limit else None,
    )


async def suppress_customer(
    runtime: Runtime, customer_id: str, *, reason: str
) -> SuppressionPublic:
    """Suppress the id (idempotent: a suppressed id keeps its first time and reason)."""
    async with runtime.engine.begin() as conn:
        await repo.suppress(conn, ids=[customer_id], at=runtime.clock(), reason=reason)
        row = await repo.suppression(conn, customer_id=customer_id)
    assert row is not None
    return SuppressionPublic(
        customer_id=row.customer_id, suppressed_at=row.suppressed_at, reason=row.reason
    )


async def lift_suppression(runtime: Runtime, customer_id: str) -> None:
    async with runtime.engine.begin() as conn:
        if not await repo.lift_suppression(conn, customer_id=customer_id):
            raise NotFound(f"{customer_id!r} is not suppressed")
