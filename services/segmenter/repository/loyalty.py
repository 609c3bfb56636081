"""The loyalty program's rows: the program document (one row, cached per process), the
ledger (one entry per earning message and rule, or per redemption), and each profile's
balance and tier (``profiles.loyalty_points`` / ``loyalty_tier``, read like scores).

:func:`apply_loyalty` runs in the consumer's batch transaction, after the profiles are
upserted (so their rows are held): the entries the batch's events earn are inserted
``ON CONFLICT DO NOTHING`` (a redelivered event earns nothing twice; a ``first_event``
bonus is keyed by the rule alone), then the standing of each customer who earned is
recomputed from their ledger and stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.segmenter.loyalty_rules import Entry, Program, earn, expiry_of, standing
from shared.db.driver import execute, fetch
from shared.db.stamped import StampedCache
from shared.events.customer_events import CustomerEvent

ONCE = "once"


def program_cache(engine: AsyncEngine, *, poll_s: float = 1.0) -> StampedCache[Program | None]:
    async def stamp(conn: AsyncConnection) -> Any:
        rows = await fetch(conn, "SELECT updated_at FROM segmenter.loyalty_program WHERE id = 1")
        return rows[0][0] if rows else None

    async def load(conn: AsyncConnection) -> Program | None:
        return await get_program(conn)

    return StampedCache(engine, stamp=stamp, load=load, initial=None, poll_s=poll_s)


async def get_program(conn: AsyncConnection) -> Program | None:
    rows = await fetch(conn, "SELECT document::text FROM segmenter.loyalty_program WHERE id = 1")
    return Program.model_validate_json(rows[0][0]) if rows else None


async def put_program(conn: AsyncConnection, *, program: Program, now: datetime) -> None:
    await execute(
        conn,
        """
        INSERT INTO segmenter.loyalty_program (id, document, updated_at)
        VALUES (1, CAST($1 AS jsonb), $2)
        ON CONFLICT (id) DO UPDATE
        SET document = EXCLUDED.document, updated_at = EXCLUDED.updated_at
        """,
        program.model_dump_json(),
        now,
    )


@dataclass(frozen=True)
class Standing:
    points: int
    tier: str


async def apply_loyalty(
    conn: AsyncConnection,
    *,
    program: Program,
    by_customer: Mapping[str, Sequence[CustomerEvent]],
    tiers: Mapping[str, str | None],
    now: datetime,
) -> dict[str, Standing]:
    """Ledger entries for the batch's events; the new standing of each customer whose
    points or tier changed. ``tiers``: each customer's tier before the batch (its
    multiplier applies)."""
    events = program.events()
    entries: list[tuple[str, str, str, datetime, int, datetime | None, str]] = []
    for customer, customer_events in by_customer.items():
        tier = _tier(program, tiers.get(customer))
        for event in customer_events:
            if event.event not in events:
                continue
            for earned in earn(
                program, event=event.event or "", properties=event.properties, tier=tier
            ):
                entries.append(
                    (
                        customer,
                        ONCE if earned.once else event.message_id,
                        earned.rule_id,
                        event.timestamp,
                        earned.points,
                        expiry_of(program, event.timestamp),
                        event.event or "",
                    )
                )
    if not entries:
        return {}
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    # one entry per key within the batch too (a bonus earned by two events of one batch)
    unique = list({(e[0], e[1], e[2]): e for e in reversed(entries)}.values())
    unique.sort(key=lambda e: (e[0], e[1], e[2]))
    inserted = await fetch(
        conn,
        """
        INSERT INTO segmenter.loyalty_ledger
            (customer_id, source_id, rule_id, at, points, expires_at, event)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                             $5::int4[], $6::timestamptz[], $7::text[])
        ON CONFLICT (customer_id, source_id, rule_id) DO NOTHING
        RETURNING customer_id
        """,
        *[list(column) for column in zip(*unique, strict=True)],
    )
    earners = sorted({row[0] for row in inserted})
    return await refresh_standings(conn, program=program, ids=earners, now=now)


async def refresh_standings(
    conn: AsyncConnection, *, program: Program, ids: Sequence[str], now: datetime
) -> dict[str, Standing]:
    """Recompute and store the balance and tier of ``ids``; return those that changed."""
    if not ids:
        return {}
    ledgers = await ledger_of(conn, ids=ids)
    points, tier_names = [], []
    for customer in ids:
        result = standing(program, ledgers.get(customer, []), now=now)
        points.append(result.balance)
        tier_names.append(result.tier.name)
    changed = await fetch(
        conn,
        """
        UPDATE segmenter.profiles p SET loyalty_points = t.points, loyalty_tier = t.tier
        FROM unnest($1::text[], $2::int4[], $3::text[]) AS t(customer_id, points, tier)
        WHERE p.customer_id = t.customer_id
          AND (p.loyalty_points IS DISTINCT FROM t.points OR p.loyalty_tier IS DISTINCT FROM t.tier)
        RETURNING p.customer_id, p.loyalty_points, p.loyalty_tier
        """,
        list(ids),
        points,
        tier_names,
    )
    return {row[0]: Standing(row[1], row[2]) for row in changed}


async def ledger_of(conn: AsyncConnection, *, ids: Iterable[str]) -> dict[str, list[Entry]]:
    rows = await fetch(
        conn,
        "SELECT customer_id, at, points, expires_at FROM segmenter.loyalty_ledger "
        "WHERE customer_id = ANY($1::text[]) ORDER BY customer_id, at",
        list(ids),
    )
    out: dict[str, list[Entry]] = {}
    for row in rows:
        out.setdefault(row[0], []).append(Entry(row[1], row[2], row[3]))
    return out


async def history(conn: AsyncConnection, *, customer_id: str, limit: int = 200) -> list[Any]:
    return list(
        await fetch(
            conn,
            "SELECT source_id, rule_id, at, points, expires_at, event "
            "FROM segmenter.loyalty_ledger WHERE customer_id = $1 ORDER BY at DESC, entry_id DESC "
            "LIMIT $2",
            customer_id,
            limit,
        )
    )


async def lock_profile(conn: AsyncConnection, *, customer_id: str) -> None:
    """Lock the customer's profile row (if any): orders a redemption with the consumer's
    batches for the customer, which lock it first too."""
    await fetch(
        conn, "SELECT 1 FROM segmenter.profiles WHERE customer_id = $1 FOR UPDATE", customer_id
    )


async def redeem(
    conn: AsyncConnection, *, customer_id: str, redemption_id: str, points: int, now: datetime
) -> bool:
    """Spend ``points`` under ``redemption_id`` (idempotent); False when it existed."""
    rows = await fetch(
        conn,
        """
        INSERT INTO segmenter.loyalty_ledger (customer_id, source_id, rule_id, at, points, event)
        VALUES ($1, $2, 'redeem', $3, $4, 'redeem')
        ON CONFLICT (customer_id, source_id, rule_id) DO NOTHING RETURNING entry_id
        """,
        customer_id,
        f"redeem:{redemption_id}",
        now,
        -points,
    )
    return bool(rows)


async def customers_with_points(
    conn: AsyncConnection, *, after: str | None, limit: int
) -> list[str]:
    rows = await fetch(
        conn,
        "SELECT DISTINCT customer_id FROM segmenter.loyalty_ledger "
        "WHERE $1::text IS NULL OR customer_id > $1 ORDER BY customer_id LIMIT $2",
        after,
        limit,
    )
    return [row[0] for row in rows]


def _tier(program: Program, name: str | None) -> Any:
    if name is None:
        return None
    return next((t for t in program.tiers if t.name == name), None)


async def move_ledger(conn: AsyncConnection, *, from_id: str, to_id: str) -> None:
    """An alias merge: the anonymous id's entries join the known customer's ledger (a
    one-off bonus both earned stays once); their standing is refreshed when they next
    earn, or by the refresh job."""
    await execute(
        conn,
        """
        WITH moved AS (
            DELETE FROM segmenter.loyalty_ledger WHERE customer_id = $1
            RETURNING source_id, rule_id, at, points, expires_at, event
        )
        INSERT INTO segmenter.loyalty_ledger
            (customer_id, source_id, rule_id, at, points, expires_at, event)
        SELECT $2, source_id, rule_id, at, points, expires_at, event FROM moved
        ORDER BY source_id, rule_id
        ON CONFLICT (customer_id, source_id, rule_id) DO NOTHING
        """,
        from_id,
        to_id,
    )
