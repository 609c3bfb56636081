"""Loyalty: the program document, a customer's standing, redemptions, the refresh."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.segmenter.errors import Conflict, NotFound
from services.segmenter.loyalty_job import refresh_all
from services.segmenter.loyalty_rules import Program, standing
from services.segmenter.repository import loyalty as store
from services.segmenter.repository.outbox import publish_profiles
from services.segmenter.runtime import Runtime
from services.segmenter.schemas import (
    ExpiryPublic,
    LedgerEntryPublic,
    RedemptionCreate,
    RedemptionPublic,
    RefreshPublic,
    StandingPublic,
)


async def get_program(runtime: Runtime) -> Program:
    async with runtime.engine.connect() as conn:
        return await _program(conn)


async def put_program(runtime: Runtime, program: Program) -> Program:
    """Events earn under the new program from the next batch on; balances and tiers
    change at the next refresh."""
    async with runtime.engine.begin() as conn:
        await store.put_program(conn, program=program, now=runtime.clock())
    runtime.loyalty.invalidate()
    return program


async def refresh(runtime: Runtime) -> RefreshPublic:
    changed = await refresh_all(runtime.engine, catalogs=runtime.catalogs, now=runtime.clock())
    runtime.relay.notify()
    return RefreshPublic(changed=changed)


async def get_standing(runtime: Runtime, customer_id: str) -> StandingPublic:
    async with runtime.engine.connect() as conn:
        program = await _program(conn)
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
            LedgerEntryPublic(
                source_id=r[0], rule_id=r[1], at=r[2], points=r[3], expires_at=r[4], event=r[5]
            )
            for r in rows
        ],
        expiries=[ExpiryPublic(at=at, points=p) for at, p in result.expiries],
    )


async def redeem(
    runtime: Runtime, customer_id: str, body: RedemptionCreate
) -> tuple[RedemptionPublic, bool]:
    """Spend points (oldest first), idempotent by ``body.id``; the redemption and whether
    it was applied now (False: a retry, nothing spent). :class:`Conflict` when the
    balance is short (nothing written)."""
    now = runtime.clock()
    async with runtime.engine.begin() as conn:
        program = await _program(conn)
        await store.lock_profile(conn, customer_id=customer_id)
        ledger = (await store.ledger_of(conn, ids=[customer_id])).get(customer_id, [])
        balance = standing(program, ledger, now=now).balance
        applied = await store.redeem(
            conn, customer_id=customer_id, redemption_id=body.id, points=body.points, now=now
        )
        if applied and body.points > balance:
            raise Conflict(f"{customer_id!r} has {balance} points, {body.points} asked")
        changed = await store.refresh_standings(conn, program=program, ids=[customer_id], now=now)
        if changed:
            await publish_profiles(conn, ids=list(changed), now=now)
    runtime.relay.notify()
    held = changed.get(customer_id)
    answer = RedemptionPublic(
        customer_id=customer_id,
        redemption_id=body.id,
        points=held.points if held else balance,
    )
    return answer, applied


async def _program(conn: AsyncConnection) -> Program:
    program = await store.get_program(conn)
    if program is None:
        raise NotFound("no loyalty program: PUT /v1/loyalty/program first")
    return program
