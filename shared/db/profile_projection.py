"""A service's own copy of the customer profiles, kept from the ``profiles`` topic.

The journey (branches on traits and scores) and the dispatcher (contacts, timezone,
personalisation) each keep one in their own schema, so neither reads the segmenter's
tables nor calls it on the event path. The highest ``version`` wins, whatever order
redeliveries come in. An erased profile (``deleted``) keeps only a tombstone, its
id and version, with every personal field dropped, so that a stale update that
arrives later cannot bring the data back.

Each row keeps ``folded``, the ``customer.events`` position the segmenter had folded
into the profile (``folded_partition``, ``folded_offset``): a message without one (a
job's) keeps the position held. :func:`load_folded` reads it for the freshness checks
(see "Freshness" in docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    Text,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db.driver import columns_of, fetch
from shared.db.jsonb import json_object, json_text
from shared.events.base import Position
from shared.events.profiles import ProfileUpdate

Timestamp = DateTime(timezone=True)


def profile_projection_table(metadata: MetaData, name: str = "profiles") -> Table:
    """The projection table in the metadata's schema."""
    return Table(
        name,
        metadata,
        Column("customer_id", Text(collation="C"), primary_key=True),
        Column("version", BigInteger, nullable=False),
        Column("deleted", Boolean, nullable=False, server_default=false()),
        Column("traits", JSONB, nullable=False, server_default="{}"),
        Column("email", Text),
        Column("phone", Text),
        Column("timezone", Text),
        Column("locale", Text),
        #: churn_risk, predicted_ltv, rfm_tier, score_method, loyalty_tier, loyalty_points
        #: (absent when unknown), and the profile's ``recommendations`` (a list of
        #: {product_id, score, because, source}) when it has some
        Column("computed", JSONB, nullable=False, server_default="{}"),
        Column("first_seen_at", Timestamp),
        Column("last_seen_at", Timestamp),
        Column("updated_at", Timestamp, nullable=False),
        #: how far the segmenter had folded the customer's ``customer.events``
        Column("folded_partition", Integer),
        Column("folded_offset", BigInteger),
    )


@dataclass(frozen=True, slots=True)
class ProjectedProfile:
    customer_id: str
    version: int
    traits: dict[str, Any] = field(default_factory=dict)
    email: str | None = None
    phone: str | None = None
    timezone: str | None = None
    locale: str | None = None
    computed: dict[str, Any] = field(default_factory=dict)
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ProjectionChanges:
    """What a batch of updates changed: ids now holding newer data, and ids erased."""

    updated: frozenset[str]
    erased: frozenset[str]


def _latest(updates: Iterable[ProfileUpdate]) -> list[ProfileUpdate]:
    newest: dict[str, ProfileUpdate] = {}
    for update in updates:
        held = newest.get(update.customer_id)
        if held is None or update.version > held.version:
            newest[update.customer_id] = update
    return list(newest.values())


async def apply_profile_updates(
    conn: AsyncConnection, *, table: Table, updates: Sequence[ProfileUpdate]
) -> ProjectionChanges:
    """Upsert a batch of ``profiles`` messages in one statement, within the caller's
    transaction; a row changes only for a higher version than it holds."""
    rows = _latest(updates)
    if not rows:
        return ProjectionChanges(frozenset(), frozenset())

    def column(value: Callable[[ProfileUpdate], Any], erased: Any = None) -> list[Any]:
        """A column of the batch; an erased profile's personal fields are dropped."""
        return [erased if row.deleted else value(row) for row in rows]

    changed = await fetch(
        conn,
        f"""
        INSERT INTO {table.fullname} AS p (customer_id, version, deleted, traits, email, phone,
            timezone, locale, computed, first_seen_at, last_seen_at, updated_at,
            folded_partition, folded_offset)
        SELECT u.customer_id, u.version, u.deleted, u.traits::jsonb, u.email, u.phone,
            u.timezone, u.locale, u.computed::jsonb, u.first_seen_at, u.last_seen_at,
            u.updated_at, u.folded_partition, u.folded_offset
        FROM unnest($1::text[], $2::bigint[], $3::bool[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[],
            $12::timestamptz[], $13::int[], $14::bigint[])
            AS u(customer_id, version, deleted, traits, email, phone, timezone, locale,
                 computed, first_seen_at, last_seen_at, updated_at, folded_partition,
                 folded_offset)
        ON CONFLICT (customer_id) DO UPDATE SET
            version = EXCLUDED.version, deleted = EXCLUDED.deleted, traits = EXCLUDED.traits,
            email = EXCLUDED.email, phone = EXCLUDED.phone, timezone = EXCLUDED.timezone,
            locale = EXCLUDED.locale, computed = EXCLUDED.computed,
            first_seen_at = EXCLUDED.first_seen_at, last_seen_at = EXCLUDED.last_seen_at,
            updated_at = EXCLUDED.updated_at,
            folded_partition = coalesce(EXCLUDED.folded_partition, p.folded_partition),
            folded_offset = CASE WHEN EXCLUDED.folded_partition IS NULL THEN p.folded_offset
                ELSE EXCLUDED.folded_offset END
        WHERE p.version < EXCLUDED.version
        RETURNING customer_id, deleted
        """,
        *columns_of(rows, "customer_id", "version", "deleted"),
        column(lambda row: json_text(row.traits), erased="{}"),
        column(lambda row: row.email),
        column(lambda row: row.phone),
        column(lambda row: row.timezone),
        column(lambda row: row.locale),
        column(_computed_json, erased="{}"),
        column(lambda row: row.first_seen_at),
        column(lambda row: row.last_seen_at),
        [row.updated_at for row in rows],
        [row.folded.partition if row.folded else None for row in rows],
        [row.folded.offset if row.folded else None for row in rows],
    )
    return ProjectionChanges(
        updated=frozenset(r["customer_id"] for r in changed if not r["deleted"]),
        erased=frozenset(r["customer_id"] for r in changed if r["deleted"]),
    )


async def load_profiles(
    conn: AsyncConnection, *, table: Table, ids: Iterable[str]
) -> dict[str, ProjectedProfile]:
    """The live (not erased) profiles among ``ids``; unknown and erased ids are absent."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    rows = await fetch(
        conn,
        f"""
        SELECT customer_id, version, traits::text AS traits, email, phone, timezone, locale,
               computed::text AS computed, first_seen_at, last_seen_at, updated_at
        FROM {table.fullname}
        WHERE customer_id = ANY($1::text[]) AND NOT deleted
        """,
        wanted,
    )
    return {row["customer_id"]: _profile(row) for row in rows}


async def erased_ids(conn: AsyncConnection, *, table: Table, ids: Iterable[str]) -> frozenset[str]:
    """The ids among ``ids`` that are tombstones: erased customers, whose later inputs
    a service drops (or pseudonymises) rather than keep under their id."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return frozenset()
    rows = await fetch(
        conn,
        f"SELECT customer_id FROM {table.fullname} WHERE customer_id = ANY($1::text[]) AND deleted",
        wanted,
    )
    return frozenset(row["customer_id"] for row in rows)


async def load_folded(
    conn: AsyncConnection, *, table: Table, ids: Iterable[str]
) -> dict[str, Position | None]:
    """How far each projected profile among ``ids`` (erased ones too) has folded
    (``None``: a row without a position); ids without a row are absent."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    rows = await fetch(
        conn,
        f"SELECT customer_id, folded_partition, folded_offset FROM {table.fullname} "
        "WHERE customer_id = ANY($1::text[])",
        wanted,
    )
    return {
        row["customer_id"]: (
            Position(partition=row["folded_partition"], offset=row["folded_offset"])
            if row["folded_partition"] is not None
            else None
        )
        for row in rows
    }


def _profile(row: Mapping[str, Any]) -> ProjectedProfile:
    return ProjectedProfile(
        customer_id=row["customer_id"],
        version=row["version"],
        traits=json_object(row["traits"]),
        email=row["email"],
        phone=row["phone"],
        timezone=row["timezone"],
        locale=row["locale"],
        computed=json_object(row["computed"]),
        first_seen_at=row["first_seen_at"],
        last_seen_at=row["last_seen_at"],
        updated_at=row["updated_at"],
    )


def _computed_json(row: ProfileUpdate) -> str:
    """The computed fields as stored, with the recommendations beside them: templates
    read both from the projection without a column of their own."""
    computed: dict[str, Any] = row.computed.model_dump(exclude_none=True, by_alias=False)
    if row.recommendations is not None:
        computed["recommendations"] = [r.model_dump(by_alias=False) for r in row.recommendations]
    return json_text(computed)
