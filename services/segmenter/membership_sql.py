"""Set-based membership: apply one segment to many customers in a few SQL statements.

Used where Python per customer would be too slow: the sweep of customers whose
timers are due, the backfill of a new or edited segment, and rescoring. For a
scope of customers (those in the temp table ``scope``, or every profile):

1. ``matched``: the scope's customers (or, for a backfill, those of a range of
   customer ids: :class:`KeyRange`) for whom the segment's SQL predicate holds;
2. insert the missing memberships and delete those no longer matched, each
   with ``RETURNING``, and put exactly those changes in the outbox
   (:func:`shared.db.outbox.insert_messages_sql`), encoded as
   :class:`shared.events.segment_changes.SegmentChange` in JSON by
   :func:`messages.change_json_sql`;
3. timers: a backfill gives every profile the segment's next flip where it is
   earlier than its timer (:func:`add_earlier_timers`, ``next_flip_sql``).

The sweep uses :func:`apply_segments`, which does the same for several segments
at once: one pass over the scope's profiles evaluates every segment of a
dependency level (and the next timer) into the temp table ``evaluated``, and one
statement applies all their membership changes, and the scope's timers are set to
the earliest next flip of every time-dependent segment. Segments reading a segment
of the same sweep come in a later level, so they see its new memberships, as with
:func:`apply_segment` one segment at a time in dependency order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    MetaData,
    Table,
    Text,
    and_,
    any_,
    cast,
    exists,
    false,
    func,
    insert,
    literal,
    literal_column,
    null,
    select,
    text,
    true,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import UserDefinedType

from services.segmenter.catalog import ActiveSegment
from services.segmenter.messages import change_json_sql
from services.segmenter.models import Membership, Profile, membership_timers, outbox
from services.segmenter.rules.next_flip import next_flip_sql
from services.segmenter.rules.sql_lookups import SharedLookups
from services.segmenter.rules.sql_predicate import compile_sql
from shared.db import timers as durable_timers
from shared.db.outbox import insert_messages_sql
from shared.db.tables import table_of
from shared.events import segment_changes


class TID(UserDefinedType[str]):
    """PostgreSQL's row address type (``ctid``)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "tid"


profiles = table_of(Profile)
memberships = table_of(Membership)
timers = membership_timers
_temp = MetaData()
scope_table = Table(
    "scope",
    _temp,
    Column("customer_id", Text, primary_key=True),
    #: the address of the customer's claimed timer row (NULL: no timer claimed)
    Column("timer", TID),
    prefixes=["TEMPORARY"],
)
matched_table = Table(
    "matched", _temp, Column("customer_id", Text, primary_key=True), prefixes=["TEMPORARY"]
)
evaluated_table = Table(
    "evaluated",
    _temp,
    Column("customer_id", Text, primary_key=True),
    Column("hits", postgresql.ARRAY(Boolean)),
    Column("was", postgresql.ARRAY(Boolean)),
    Column("due_at", DateTime(timezone=True)),
    Column("timer", TID),
    prefixes=["TEMPORARY"],
)


TIMER_STEP = timedelta(seconds=1)
"""How far past ``now`` a sweep puts a timer that a rule put at or before ``now``."""


@dataclass(frozen=True, slots=True)
class Applied:
    entered: int
    exited: int

    def __add__(self, other: Applied) -> Applied:
        return Applied(self.entered + other.entered, self.exited + other.exited)


@dataclass(frozen=True, slots=True)
class KeyRange:
    """The customer ids after ``after`` up to ``through`` (included), in key order (byte
    order, as the key columns are ``COLLATE "C"``); None leaves that end open."""

    after: str | None = None
    through: str | None = None

    def holds(self, column: ColumnElement[str]) -> ColumnElement[bool]:
        bounds = []
        if self.after is not None:
            bounds.append(column > self.after)
        if self.through is not None:
            bounds.append(column <= self.through)
        return and_(true(), *bounds)

    def sql(self, column: str) -> str:
        """The same condition as text, with the parameters of :meth:`params`."""
        bounds = ["true"]
        if self.after is not None:
            bounds.append(f"{column} > :range_after")
        if self.through is not None:
            bounds.append(f"{column} <= :range_through")
        return " AND ".join(bounds)

    def params(self) -> dict[str, str]:
        named = {"range_after": self.after, "range_through": self.through}
        return {name: value for name, value in named.items() if value is not None}


async def bound_plans_to_the_scope(conn: AsyncConnection) -> None:
    """Make this transaction's joins index lookups per scoped customer.

    A sweep joins a chunk of customers with tables of every customer. The planner
    prices a hash join over a whole table (say a million timers) below tens of
    thousands of index lookups, though building that hash costs more than the
    lookups, and it is built again for every chunk: the sweep's time then grows with
    the tables instead of with the chunk. Without hash and merge joins every join
    is a nested loop over the scope with index lookups (a sweep of 1M profiles in
    chunks of 50,000: 46 s instead of 75 s, see docs/performance.md).
    """
    await conn.execute(text("SET LOCAL enable_hashjoin = off"))
    await conn.execute(text("SET LOCAL enable_mergejoin = off"))


async def create_scope(conn: AsyncConnection) -> None:
    """The temp tables ``scope`` and ``matched``, empty (call it first in a transaction)."""
    await create_temp_table(conn, "scope", 'customer_id text COLLATE "C" PRIMARY KEY, timer tid')
    await create_temp_table(conn, "matched", 'customer_id text COLLATE "C" PRIMARY KEY')


async def create_temp_table(conn: AsyncConnection, name: str, columns: str) -> None:
    """A temp table of this connection, emptied at each commit.

    Created once per connection and kept, rather than created and dropped by every
    transaction: each drop writes and deletes catalog rows, which a sweep of a
    million customers would do for every chunk and table.
    """
    await conn.execute(
        text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ({columns}) ON COMMIT DELETE ROWS")
    )


async def analyze_scope(conn: AsyncConnection) -> None:
    """Give the planner the scope's real size: temp tables are never auto-analyzed, and
    without statistics it guesses hash joins over all of ``profiles`` for a small scope."""
    await conn.execute(text("ANALYZE scope"))


async def claim_due_timers(conn: AsyncConnection, *, now: datetime, limit: int) -> int:
    """Lock up to ``limit`` due timers and put their customers in the scope, skipping the
    timers another replica holds.

    The scope keeps each locked row's address (``ctid``), so that
    :func:`apply_segments` rewrites the timers without looking them up again: the
    row lock keeps the address valid until the transaction ends.
    """
    due = durable_timers.due(
        timers,
        now=now,
        limit=limit,
        columns=[timers.c.customer_id, literal_column("ctid", TID()).label("timer")],
    ).subquery("due")
    result = await conn.execute(
        insert(scope_table).from_select(
            ["customer_id", "timer"],
            select(due.c.customer_id, due.c.timer).order_by(due.c.customer_id),
        )
    )
    return result.rowcount or 0


async def apply_segment(
    conn: AsyncConnection,
    segment: ActiveSegment,
    *,
    now: datetime,
    cause: str,
    over: KeyRange | None = None,
) -> Applied:
    """Bring the memberships of ``segment`` up to date for the scope, or ``over`` a range
    of customer ids (a backfill: every membership of the range, with a profile or
    not, and the members who stay move to the segment's version)."""
    await conn.execute(text("TRUNCATE matched"))
    lookups = SharedLookups()
    predicate = compile_sql(segment.rule, now=now, lookups=lookups)
    candidates = select(profiles.c.customer_id).select_from(lookups.source()).where(predicate)
    if over is None:
        candidates = candidates.where(profiles.c.customer_id.in_(select(scope_table.c.customer_id)))
    else:
        candidates = candidates.where(over.holds(profiles.c.customer_id))
    await conn.execute(insert(matched_table).from_select(["customer_id"], candidates))
    # Only the members that really change are written: inserting every matched customer
    # and letting ON CONFLICT skip the members costs a speculative insertion each.
    if over is not None:
        exited_sql = f"""
                    DELETE FROM segmenter.memberships m
                    WHERE m.segment_id = :sid AND {over.sql("m.customer_id")}
                      AND NOT EXISTS (SELECT 1 FROM matched x WHERE x.customer_id = m.customer_id)
                    RETURNING m.customer_id"""
    else:
        exited_sql = """
                    DELETE FROM segmenter.memberships m USING scope s
                    WHERE m.segment_id = :sid AND m.customer_id = s.customer_id
                      AND NOT EXISTS (SELECT 1 FROM matched x WHERE x.customer_id = m.customer_id)
                    RETURNING m.customer_id"""
    params = _change_params(now, cause) | {"sid": segment.id, "version": segment.version}
    if over is not None:
        params |= over.params()
    queue_changes = _queue_changes_sql(
        sid="CAST(:sid AS text)",
        version="CAST(:version AS text)",
        source="changes ORDER BY customer_id",
    )
    row = (
        await conn.execute(
            text(
                f"""
                WITH entered AS (
                    INSERT INTO segmenter.memberships
                        (segment_id, customer_id, segment_version, entered_at)
                    SELECT :sid, x.customer_id, :version, :now FROM matched x
                    WHERE NOT EXISTS (
                        SELECT 1 FROM segmenter.memberships m
                        WHERE m.segment_id = :sid AND m.customer_id = x.customer_id
                    )
                    ON CONFLICT DO NOTHING
                    RETURNING customer_id
                ), exited AS ({exited_sql}
                ), changes AS (
                    SELECT customer_id, 'entered' AS change FROM entered
                    UNION ALL
                    SELECT customer_id, 'exited' AS change FROM exited
                ), queued AS ({queue_changes} RETURNING 1)
                SELECT (SELECT count(*) FROM entered), (SELECT count(*) FROM exited)
                """
            ),
            params,
        )
    ).one()
    if over is not None:  # a backfill: members who stay now belong to the new version
        await conn.execute(
            text(
                "UPDATE segmenter.memberships SET segment_version = :version "
                "WHERE segment_id = :sid AND segment_version <> :version "
                f"AND {over.sql('customer_id')}"
            ),
            {"sid": segment.id, "version": segment.version} | over.params(),
        )
    return Applied(entered=row[0], exited=row[1])


def _queue_changes_sql(*, sid: str, version: str, source: str) -> str:
    """The outbox ``INSERT`` of one ``segment.changes`` message per row of ``source``
    (its ``customer_id`` and ``change``), with the parameters of :func:`_change_params`."""
    return insert_messages_sql(
        outbox,
        topic="CAST(:topic AS text)",
        key="convert_to(customer_id, 'UTF8')",
        value=change_json_sql(
            sid=sid,
            version=version,
            change="change",
            epoch_ms="CAST(:epoch_ms AS text)",
            at="CAST(:at AS text)",
            cause="CAST(:cause AS text)",
        ),
        source=source,
    )


def _change_params(now: datetime, cause: str) -> dict[str, object]:
    return {
        "now": now,
        "at": now.isoformat().replace("+00:00", "Z"),
        "epoch_ms": str(int(now.timestamp() * 1000)),
        "cause": cause,
        "topic": segment_changes.TOPIC,
    }


# --- several segments over the scope at once (the sweep) -----------------------------------------


async def apply_segments(
    conn: AsyncConnection, segments: Sequence[ActiveSegment], *, now: datetime, cause: str
) -> Applied:
    """:func:`apply_segment` for each of ``segments`` (in dependency order) over the scope,
    and each scoped customer's timer set to the earliest next flip of ``segments``.
    A timer that a rule puts at or before ``now`` is put a second later, so that a
    timer always moves forward.

    One pass over the scope's profiles per dependency level evaluates the level's
    segments (the first pass also their next timer: flips never read memberships);
    one statement per level applies the level's membership changes; the outbox
    messages are queued at the end, segment by segment, each ordered by customer.
    """
    if not segments:  # no segment depends on time any more: these timers have no use
        await conn.execute(
            text("DELETE FROM segmenter.membership_timers t USING scope s WHERE t.ctid = s.timer")
        )
        return Applied(entered=0, exited=0)
    for name, columns in (
        (
            "evaluated",
            'customer_id text COLLATE "C", hits boolean[], was boolean[], due_at timestamptz, '
            "timer tid",
        ),
        (
            "sweep_changes",
            'position int, segment_id text COLLATE "C", version int, customer_id text COLLATE "C", '
            "change text",
        ),
    ):
        await create_temp_table(conn, name, columns)
    timed = [s for s in segments if s.time_dependent]
    entered = exited = 0
    for index, level in enumerate(_levels(segments)):
        level_segments = [segments[i] for i in level]
        await _evaluate_level(conn, level_segments, now=now, timed=timed if index == 0 else [])
        if index == 0:
            await _store_due(conn, now=now)
        level_entered, level_exited = await _apply_level(conn, segments, level, now=now)
        entered += level_entered
        exited += level_exited
    queue_changes = _queue_changes_sql(
        sid="segment_id",
        version="CAST(version AS text)",
        source="sweep_changes ORDER BY position, customer_id",
    )
    await conn.execute(text(queue_changes), _change_params(now, cause))
    return Applied(entered=entered, exited=exited)


def _earliest(flips: Sequence[ColumnElement[datetime | None]]) -> ColumnElement[Any]:
    return func.least(*flips) if len(flips) > 1 else flips[0]


def _levels(segments: Sequence[ActiveSegment]) -> list[list[int]]:
    """Positions of ``segments`` by dependency level: a segment reading another of
    ``segments`` comes one level after it."""
    level_of: dict[str, int] = {}
    levels: list[list[int]] = []
    for position, segment in enumerate(segments):
        level = 1 + max((level_of[d] for d in segment.depends_on if d in level_of), default=-1)
        level_of[segment.id] = level
        while len(levels) <= level:
            levels.append([])
        levels[level].append(position)
    return levels


async def _evaluate_level(
    conn: AsyncConnection,
    segments: Sequence[ActiveSegment],
    *,
    now: datetime,
    timed: Sequence[ActiveSegment],
) -> None:
    """``evaluated``: per profile of the scope, whether it matches each segment (an array
    in the order of ``segments``) and its next timer: the earliest next flip of the
    ``timed`` segments (NULL when none is given).

    Every rule reads event rows through the same :class:`SharedLookups`: one lookup per
    event name (and rollup dimension) per profile, however many leaves read it.
    """
    await conn.execute(text("DELETE FROM evaluated"))  # the previous level's, if any
    lookups = SharedLookups()
    hits = postgresql.array([compile_sql(s.rule, now=now, lookups=lookups) for s in segments])
    flips = [next_flip_sql(s.rule, now=now, lookups=lookups) for s in timed]
    due_at = _earliest(flips) if flips else cast(null(), DateTime(timezone=True))
    current = (
        select(func.array_agg(memberships.c.segment_id).label("ids"))
        .where(memberships.c.customer_id == profiles.c.customer_id)
        .correlate(profiles)
        .lateral("current_memberships")
    )
    was = postgresql.array(
        [func.coalesce(literal(s.id, Text) == any_(current.c.ids), false()) for s in segments]
    )
    source = select(profiles.c.customer_id, hits, was, due_at, scope_table.c.timer).select_from(
        scope_table.join(
            lookups.source().outerjoin(current, true()),
            profiles.c.customer_id == scope_table.c.customer_id,
        )
    )
    await conn.execute(
        insert(evaluated_table).from_select(
            ["customer_id", "hits", "was", "due_at", "timer"], source
        )
    )


async def _apply_level(
    conn: AsyncConnection, segments: Sequence[ActiveSegment], level: Sequence[int], *, now: datetime
) -> tuple[int, int]:
    """Write the memberships of ``evaluated`` for the level's segments; note the changes."""
    row = (
        await conn.execute(
            text(
                """
                WITH seg AS (
                    SELECT * FROM unnest(CAST(:sids AS text[]), CAST(:versions AS int[]),
                                         CAST(:positions AS int[]))
                        WITH ORDINALITY AS s(sid, version, position, k)
                ), flipped AS MATERIALIZED (
                    SELECT e.customer_id, s.sid, s.version, e.hits[s.k] AS hit
                    FROM evaluated e JOIN seg s ON e.hits[s.k] IS DISTINCT FROM e.was[s.k]
                    WHERE e.hits IS DISTINCT FROM e.was
                ), entered AS (
                    INSERT INTO segmenter.memberships
                        (segment_id, customer_id, segment_version, entered_at)
                    SELECT f.sid, f.customer_id, f.version, :now FROM flipped f WHERE f.hit
                    ON CONFLICT DO NOTHING
                    RETURNING segment_id, customer_id
                ), exited AS (
                    DELETE FROM segmenter.memberships m
                    USING flipped f
                    WHERE m.segment_id = f.sid AND m.customer_id = f.customer_id AND NOT f.hit
                    RETURNING m.segment_id, m.customer_id
                ), noted AS (
                    INSERT INTO sweep_changes (position, segment_id, version, customer_id, change)
                    SELECT s.position, s.sid, s.version, e.customer_id, 'entered'
                    FROM entered e JOIN seg s ON s.sid = e.segment_id
                    UNION ALL
                    SELECT s.position, s.sid, s.version, x.customer_id, 'exited'
                    FROM exited x JOIN seg s ON s.sid = x.segment_id
                    RETURNING change
                )
                SELECT count(*) FILTER (WHERE change = 'entered'),
                       count(*) FILTER (WHERE change = 'exited')
                FROM noted
                """
            ),
            {
                "sids": [segments[i].id for i in level],
                "versions": [segments[i].version for i in level],
                "positions": list(level),
                "now": now,
            },
        )
    ).one()
    return int(row[0]), int(row[1])


async def _store_due(conn: AsyncConnection, *, now: datetime) -> None:
    """The scope's timers from ``evaluated.due_at`` (none where it is NULL).

    The claimed timers are rewritten in place, by the address the claim kept: no
    second index lookup. Customers of the scope without a timer row, or without a
    profile (none, normally), need a lookup each, so those statements run only when
    the counts say they have work.
    """
    params = {"now": now, "later": now + TIMER_STEP}
    scoped, evaluated, untimed = (
        await conn.execute(
            text(
                """
                WITH moved AS (
                    UPDATE segmenter.membership_timers t
                    SET due_at = CASE WHEN e.due_at <= :now THEN :later ELSE e.due_at END
                    FROM evaluated e
                    WHERE t.ctid = e.timer AND e.due_at IS NOT NULL
                    RETURNING 1
                ), dropped AS (
                    DELETE FROM segmenter.membership_timers t USING evaluated e
                    WHERE t.ctid = e.timer AND e.due_at IS NULL
                    RETURNING 1
                )
                SELECT (SELECT count(*) FROM scope), (SELECT count(*) FROM evaluated),
                       (SELECT count(*) FROM evaluated WHERE timer IS NULL AND due_at IS NOT NULL)
                """
            ),
            params,
        )
    ).one()
    if untimed:
        await conn.execute(
            text(
                """
                INSERT INTO segmenter.membership_timers AS t (customer_id, due_at)
                SELECT customer_id, CASE WHEN due_at <= :now THEN :later ELSE due_at END
                FROM evaluated e WHERE e.timer IS NULL AND e.due_at IS NOT NULL
                ON CONFLICT (customer_id) DO UPDATE SET due_at = least(t.due_at, excluded.due_at)
                """
            ),
            params,
        )
    if evaluated < scoped:  # timers of customers without a profile
        await conn.execute(
            text(
                """
                DELETE FROM segmenter.membership_timers t USING scope s
                WHERE t.ctid = s.timer
                  AND NOT EXISTS (SELECT 1 FROM evaluated e WHERE e.customer_id = s.customer_id)
                """
            )
        )


async def add_earlier_timers(
    conn: AsyncConnection,
    segments: Sequence[ActiveSegment],
    *,
    now: datetime,
    over: KeyRange | None = None,
) -> None:
    """Give every profile (``over`` a range of ids) the earliest next flip of ``segments``
    where that is earlier than its timer, or it has none: a backfill adds one segment's
    flips to the timers that already cover the others. A timer already as early is not
    written again."""
    lookups = SharedLookups()
    flips = [next_flip_sql(s.rule, now=now, lookups=lookups) for s in segments if s.time_dependent]
    if not flips:
        return
    found = (
        select(profiles.c.customer_id, _earliest(flips).label("due_at"))
        .select_from(lookups.source())
        .where((over or KeyRange()).holds(profiles.c.customer_id))
        .subquery("flips")
    )
    earlier = select(found.c.customer_id, found.c.due_at).where(
        found.c.due_at.is_not(None),
        ~exists().where(
            timers.c.customer_id == found.c.customer_id, timers.c.due_at <= found.c.due_at
        ),
    )
    statement = postgresql.insert(timers).from_select(["customer_id", "due_at"], earlier)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[timers.c.customer_id],
            set_={"due_at": func.least(timers.c.due_at, statement.excluded.due_at)},
        )
    )
