"""Profiles, their scores, event statistics and daily rollups (the event path's rows).

Every function runs inside the caller's transaction; none commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection

from services.segmenter.fold import WorkingProfile
from services.segmenter.repository.tables import profiles
from services.segmenter.rules.snapshot import DayTotals, EventStatView, RollupKey
from shared.db.driver import columns_of, execute, fetch
from shared.db.jsonb import json_object, json_text
from shared.events.base import Position

# jsonb as text, decoded by orjson: the engine's codec decodes with ``json.loads``,
# several times slower on the traits of thousands of profiles per batch.
_PROFILE_COLUMNS = (
    "customer_id, traits::text, trait_times::text, first_seen_at, last_seen_at, timezone, "
    "locale, version, folded_partition, folded_offset"
)
_SCORE_COLUMNS = (
    "churn_risk",
    "predicted_ltv",
    "rfm_recency",
    "rfm_frequency",
    "rfm_monetary",
    "rfm_tier",
    "score_method",
    "loyalty_points",
    "loyalty_tier",
)


def _working(row: Any) -> WorkingProfile:
    return WorkingProfile(
        customer_id=row[0],
        first_seen_at=row[3],
        last_seen_at=row[4],
        traits=json_object(row[1]),
        stored_trait_times=row[2],
        timezone=row[5],
        locale=row[6],
        version=row[7],
        stored=True,
        folded=Position(partition=row[8], offset=row[9]) if row[8] is not None else None,
    )


async def load_profiles(
    conn: AsyncConnection, *, ids: Iterable[str], lock: bool = True
) -> dict[str, WorkingProfile]:
    """Stored profiles of ``ids``, locked against concurrent writers when ``lock``."""
    profiles_, _ = await load_profiles_and_scores(conn, ids=ids, lock=lock)
    return profiles_


async def load_profiles_and_scores(
    conn: AsyncConnection, *, ids: Iterable[str], lock: bool = True
) -> tuple[dict[str, WorkingProfile], dict[str, dict[str, Any]]]:
    """:func:`load_profiles` and :func:`load_scores` of the same rows in one statement."""
    wanted = sorted(set(ids))  # a stable lock order avoids deadlocks between replicas
    if not wanted:
        return {}, {}
    rows = await fetch(
        conn,
        f"SELECT {_PROFILE_COLUMNS}, {', '.join(_SCORE_COLUMNS)} FROM segmenter.profiles "
        "WHERE customer_id = ANY($1::text[]) ORDER BY customer_id"
        + (" FOR UPDATE" if lock else ""),
        wanted,
    )
    found = {row[0]: _working(row) for row in rows}
    scores = {row[0]: _scores(row[0], row[10:]) for row in rows}
    return found, scores


def _scores(customer_id: str, values: Sequence[Any]) -> dict[str, Any]:
    return {"customer_id": customer_id, **dict(zip(_SCORE_COLUMNS, values, strict=True))}


async def load_scores(conn: AsyncConnection, *, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = await fetch(
        conn,
        f"SELECT customer_id, {', '.join(_SCORE_COLUMNS)} FROM segmenter.profiles "
        "WHERE customer_id = ANY($1::text[])",
        wanted,
    )
    return {row[0]: _scores(row[0], row[1:]) for row in rows}


async def upsert_profiles(
    conn: AsyncConnection, *, rows: Sequence[WorkingProfile]
) -> dict[str, int]:
    """Write each profile's merged state (the caller merged it under the row lock and
    counted a new version for each changed one); return each profile's stored version.

    Stored profiles whose traits this batch did not write (most: track events) get a
    narrower ``UPDATE`` that leaves the traits' JSON as it is; the others are written
    whole.
    """
    activity_only = [p for p in rows if p.stored and not p.traits_written]
    whole = [p for p in rows if not p.stored or p.traits_written]
    versions: dict[str, int] = {}
    if whole:
        versions |= await _upsert_whole(conn, whole)
    if activity_only:
        versions |= await _update_activity(conn, activity_only)
    return versions


async def _upsert_whole(conn: AsyncConnection, rows: Sequence[WorkingProfile]) -> dict[str, int]:
    """``GREATEST`` keeps a version from going back should a concurrent writer have
    created the row after this transaction found none."""
    stored = await fetch(
        conn,
        """
        INSERT INTO segmenter.profiles AS p
            (customer_id, traits, trait_times, first_seen_at, last_seen_at, timezone, locale,
             version, folded_partition, folded_offset)
        SELECT * FROM unnest($1::text[], $2::jsonb[], $3::jsonb[], $4::timestamptz[],
                             $5::timestamptz[], $6::text[], $7::text[], $8::bigint[],
                             $9::int[], $10::bigint[])
        ON CONFLICT (customer_id) DO UPDATE SET
            folded_partition = coalesce(excluded.folded_partition, p.folded_partition),
            folded_offset = CASE WHEN excluded.folded_partition IS NULL
                THEN p.folded_offset ELSE excluded.folded_offset END,
            traits = excluded.traits,
            trait_times = excluded.trait_times,
            first_seen_at = LEAST(p.first_seen_at, excluded.first_seen_at),
            last_seen_at = GREATEST(p.last_seen_at, excluded.last_seen_at),
            timezone = excluded.timezone,
            locale = excluded.locale,
            version = GREATEST(p.version, excluded.version),
            updated_at = now()
        RETURNING customer_id, version
        """,
        [p.customer_id for p in rows],
        [json_text(p.traits) for p in rows],
        [json_text(p.trait_times) for p in rows],
        *columns_of(rows, "first_seen_at", "last_seen_at", "timezone", "locale", "version"),
        *_folded(rows),
    )
    return {row[0]: row[1] for row in stored}


def _folded(rows: Sequence[WorkingProfile]) -> tuple[list[int | None], list[int | None]]:
    return (
        [p.folded.partition if p.folded else None for p in rows],
        [p.folded.offset if p.folded else None for p in rows],
    )


async def _update_activity(conn: AsyncConnection, rows: Sequence[WorkingProfile]) -> dict[str, int]:
    """First and last seen, and the version, of stored profiles (locked by the caller)."""
    stored = await fetch(
        conn,
        """
        UPDATE segmenter.profiles AS p SET
            first_seen_at = LEAST(p.first_seen_at, v.first_seen_at),
            last_seen_at = GREATEST(p.last_seen_at, v.last_seen_at),
            version = GREATEST(p.version, v.version),
            folded_partition = coalesce(v.folded_partition, p.folded_partition),
            folded_offset = CASE WHEN v.folded_partition IS NULL
                THEN p.folded_offset ELSE v.folded_offset END,
            updated_at = now()
        FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::bigint[],
                    $5::int[], $6::bigint[])
            AS v(customer_id, first_seen_at, last_seen_at, version, folded_partition,
                 folded_offset)
        WHERE p.customer_id = v.customer_id
        RETURNING p.customer_id, p.version
        """,
        *columns_of(rows, "customer_id", "first_seen_at", "last_seen_at", "version"),
        *_folded(rows),
    )
    return {row[0]: row[1] for row in stored}


async def bump_versions(conn: AsyncConnection, *, ids: Sequence[str]) -> dict[str, int]:
    """Give each profile a new version (one per published update); return them."""
    if not ids:
        return {}
    rows = await fetch(
        conn,
        "UPDATE segmenter.profiles SET version = version + 1 "
        "WHERE customer_id = ANY($1::text[]) RETURNING customer_id, version",
        list(ids),
    )
    return {row[0]: row[1] for row in rows}


async def delete_profiles(conn: AsyncConnection, *, ids: Sequence[str]) -> None:
    if ids:
        await conn.execute(delete(profiles).where(profiles.c.customer_id.in_(list(ids))))


async def add_event_stats(conn: AsyncConnection, *, profiles_: Iterable[WorkingProfile]) -> None:
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [])
    customer_ids, names, counts, sums, firsts, lasts = columns
    for p in profiles_:
        for name, d in p.stats.items():
            customer_ids.append(p.customer_id)
            names.append(name)
            counts.append(d.count)
            sums.append(d.value_sum)
            firsts.append(d.first_at)
            lasts.append(d.last_at)
    if not customer_ids:
        return
    await execute(
        conn,
        """
        INSERT INTO segmenter.event_stats AS s
            (customer_id, event_name, count, value_sum, first_at, last_at)
        SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::float8[],
                             $5::timestamptz[], $6::timestamptz[])
        ON CONFLICT (customer_id, event_name) DO UPDATE SET
            count = s.count + excluded.count,
            value_sum = s.value_sum + excluded.value_sum,
            first_at = LEAST(s.first_at, excluded.first_at),
            last_at = GREATEST(s.last_at, excluded.last_at)
        """,
        *columns,
    )


async def add_rollups(conn: AsyncConnection, *, profiles_: Iterable[WorkingProfile]) -> None:
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [])
    customer_ids, names, days, dimensions, counts, sums = columns
    for p in profiles_:
        for (name, dimension, day), totals in p.rollups.items():
            customer_ids.append(p.customer_id)
            names.append(name)
            days.append(day)
            dimensions.append(dimension)
            counts.append(int(totals[0]))
            sums.append(totals[1])
    if not customer_ids:
        return
    await execute(
        conn,
        """
        INSERT INTO segmenter.event_rollups AS r
            (customer_id, event_name, day, dimension, count, value_sum)
        SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::text[], $5::int[],
                             $6::float8[])
        ON CONFLICT (customer_id, event_name, day, dimension) DO UPDATE SET
            count = r.count + excluded.count,
            value_sum = r.value_sum + excluded.value_sum
        """,
        *columns,
    )


async def load_event_stats(
    conn: AsyncConnection, *, ids: Iterable[str], events: Iterable[str]
) -> dict[str, dict[str, EventStatView]]:
    """The ``event_stats`` rows of ``ids`` for the event names ``events``."""
    wanted = list(set(ids))
    names = sorted(set(events))
    found: dict[str, dict[str, EventStatView]] = defaultdict(dict)
    if not wanted or not names:
        return found
    rows = await fetch(
        conn,
        "SELECT customer_id, event_name, count, value_sum, first_at, last_at "
        "FROM segmenter.event_stats "
        "WHERE customer_id = ANY($1::text[]) AND event_name = ANY($2::text[])",
        wanted,
        names,
    )
    for customer_id, name, count, value_sum, first_at, last_at in rows:
        found[customer_id][name] = EventStatView(count, value_sum, first_at, last_at)
    return found


async def load_rollups(
    conn: AsyncConnection, *, ids: Iterable[str], pairs: frozenset[tuple[str, str]], since: date
) -> dict[str, dict[RollupKey, dict[date, DayTotals]]]:
    """The rollup rows of the tracked ``(event, dimension)`` pairs from ``since`` on.

    The event names are also given as a condition of their own: the primary key's
    first two columns then bound the index scan to those events' rows, instead of
    every rollup row of each customer (2.5× faster on the benchmark's batches).
    """
    wanted = list(set(ids))
    found: dict[str, dict[RollupKey, dict[date, DayTotals]]] = defaultdict(dict)
    if not wanted or not pairs:
        return found
    ordered = sorted(pairs)
    rows = await fetch(
        conn,
        """
        SELECT r.customer_id, r.event_name, r.dimension, r.day, r.count, r.value_sum
        FROM segmenter.event_rollups r
        JOIN unnest($3::text[], $4::text[]) AS k(event_name, dimension)
          ON r.event_name = k.event_name AND r.dimension = k.dimension
        WHERE r.customer_id = ANY($1::text[]) AND r.event_name = ANY($5::text[])
          AND r.day >= $2::date
        """,
        wanted,
        since,
        [event for event, _ in ordered],
        [dimension for _, dimension in ordered],
        sorted({event for event, _ in ordered}),
    )
    for customer_id, name, dimension, day, count, value_sum in rows:
        found[customer_id].setdefault((name, dimension), {})[day] = (count, value_sum)
    return found
