"""Set-based reads and writes of the journey tables, in the caller's transaction.

Statements of the event path pass whole columns as arrays to asyncpg
(:mod:`shared.db.driver`); the admin API's use SQLAlchemy Core.

Lock order, kept by every writer (the consumer, the timer sweep, the API's stop
and archive): a run's row before its timer. The sweep claims timers first, but
takes their runs with ``SKIP LOCKED`` and never waits for one, so it cannot
deadlock with a writer that holds a run and waits for its timer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence, Set
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.journey.machine import Run, Waiting
from services.journey.models import (
    Journey,
    JourneyVersion,
    MembershipRow,
    RunRow,
    RunStep,
    SplitWinner,
    StepCount,
    outbox_relayed,
    run_timers,
)
from shared.db.driver import columns_of, execute, fetch
from shared.db.outbox_erasure import forget_in_relayed
from shared.db.tables import table_of
from shared.db.timers import cancel, schedule
from shared.erasure import pseudonym, pseudonymise_sql
from shared.events.journey_runs import ExitReason, JourneyRunEvent, RunEventKind

journeys = table_of(Journey)
versions = table_of(JourneyVersion)
runs = table_of(RunRow)
memberships = table_of(MembershipRow)
winners = table_of(SplitWinner)
step_counts = table_of(StepCount)
run_steps = table_of(RunStep)

_RUN_COLUMNS = (
    "run_id, journey_id, journey_version, customer_id, status, step_id, on_steps, holdout, "
    "variant, entered_at, wake_at, converted_at, exited_at, exit_reason, state::text"
)

# --- runs --------------------------------------------------------------------------------


def _state(run: Run) -> str:
    waiting = run.waiting
    return orjson.dumps(
        {
            "waiting": None
            if waiting is None
            else {
                "kind": waiting.kind,
                "until": waiting.until,
                "event": waiting.event,
                "match": waiting.match,
                "dispatchId": waiting.dispatch_id,
            },
            "triggerEvent": run.trigger_event,
            "trigger": run.trigger,
            "visits": run.visits,
            "seq": run.seq,
        },
        option=orjson.OPT_UTC_Z,
    ).decode()


def _run(row: Any) -> Run:
    state = orjson.loads(row[14])
    waiting = state["waiting"]
    return Run(
        run_id=row[0],
        journey_id=row[1],
        version=row[2],
        customer_id=row[3],
        status=row[4],
        step_id=row[5],
        holdout=row[7],
        variant=row[8],
        entered_at=row[9],
        converted_at=row[11],
        exited_at=row[12],
        exit_reason=ExitReason(row[13]) if row[13] else None,
        waiting=None
        if waiting is None
        else Waiting(
            kind=waiting["kind"],
            until=datetime.fromisoformat(waiting["until"]),
            event=waiting["event"],
            match=waiting["match"],
            dispatch_id=waiting["dispatchId"],
        ),
        trigger_event=state["triggerEvent"],
        trigger=state["trigger"],
        visits=state["visits"],
        seq=state["seq"],
    )


async def lock_active_runs(
    conn: AsyncConnection, *, customer_ids: Iterable[str]
) -> dict[str, list[Run]]:
    """The runs in flight of these customers, locked until the transaction ends (in
    run id order, the order every writer locks them in), oldest first per customer."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    rows = await fetch(
        conn,
        f"SELECT {_RUN_COLUMNS} FROM {runs.fullname} "
        "WHERE customer_id = ANY($1::text[]) AND status = 'active' "
        "ORDER BY run_id FOR UPDATE",
        ids,
    )
    found: dict[str, list[Run]] = {}
    for row in rows:
        run = _run(row)
        found.setdefault(run.customer_id, []).append(run)
    for customer_runs in found.values():
        customer_runs.sort(key=lambda r: (r.entered_at, r.run_id))
    return found


async def lock_runs(
    conn: AsyncConnection, *, run_ids: Sequence[str], skip_locked: bool = False
) -> list[Run]:
    """These runs, locked (with ``skip_locked``: those no other transaction holds)."""
    if not run_ids:
        return []
    rows = await fetch(
        conn,
        f"SELECT {_RUN_COLUMNS} FROM {runs.fullname} WHERE run_id = ANY($1::text[]) "
        f"ORDER BY run_id FOR UPDATE{' SKIP LOCKED' if skip_locked else ''}",
        list(run_ids),
    )
    return [_run(row) for row in rows]


async def get_run(conn: AsyncConnection, *, run_id: str) -> Run | None:
    rows = await fetch(
        conn, f"SELECT {_RUN_COLUMNS} FROM {runs.fullname} WHERE run_id = $1", run_id
    )
    return _run(rows[0]) if rows else None


async def list_runs(
    conn: AsyncConnection,
    *,
    journey_id: str | None = None,
    customer_id: str | None = None,
    status: str | None = None,
    step_id: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[Run]:
    """A page of runs in run id order (``after``: the last id of the previous page)."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("journey_id", journey_id),
        ("customer_id", customer_id),
        ("status", status),
        ("step_id", step_id),
    ):
        if value is not None:
            params.append(value)
            clauses.append(f"{column} = ${len(params)}")
    if after is not None:
        params.append(after)
        clauses.append(f"run_id > ${len(params)}")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    params.append(limit)
    rows = await fetch(
        conn,
        f"SELECT {_RUN_COLUMNS} FROM {runs.fullname} {where} ORDER BY run_id LIMIT ${len(params)}",
        *params,
    )
    return [_run(row) for row in rows]


async def erase_runs(conn: AsyncConnection, *, customer_ids: Iterable[str]) -> int:
    """An erased customer's runs, in flight or done, keep what counts need and nothing
    personal: the customer id becomes a :func:`~shared.erasure.pseudonym` (one per
    customer), the trigger's properties are dropped (the step history, ``visits``, is
    step ids and counts). Runs in flight must have been stopped first. Returns how
    many runs were scrubbed."""
    ids = sorted(set(customer_ids))
    if not ids:
        return 0
    statement = pseudonymise_sql(
        runs.fullname,
        also=", state = jsonb_set(t.state, '{trigger}', '{}'::jsonb)",
        returning="t.run_id",
    )
    rows = await fetch(conn, statement, ids, [pseudonym() for _ in ids])
    await forget_in_relayed(conn, outbox_relayed, customer_ids=ids)
    # the history keeps step ids and times; a stop's free-text detail goes
    await execute(
        conn,
        f"UPDATE {run_steps.fullname} SET detail = NULL "
        "WHERE run_id = ANY($1::text[]) AND detail IS NOT NULL",
        [row[0] for row in rows],
    )
    return len(rows)


async def active_run_ids(conn: AsyncConnection, *, journey_id: str) -> list[str]:
    rows = await fetch(
        conn,
        f"SELECT run_id FROM {runs.fullname} WHERE journey_id = $1 AND status = 'active' "
        "ORDER BY run_id",
        journey_id,
    )
    return [row[0] for row in rows]


async def entry_history(
    conn: AsyncConnection, *, customer_ids: Iterable[str], journey_ids: Iterable[str]
) -> dict[tuple[str, str], tuple[datetime, bool]]:
    """Per (journey, customer): the last entry and whether a run is on its steps."""
    customers, journey_list = sorted(set(customer_ids)), sorted(set(journey_ids))
    if not customers or not journey_list:
        return {}
    rows = await fetch(
        conn,
        f"SELECT journey_id, customer_id, max(entered_at), "
        f"bool_or(status = 'active' AND on_steps) FROM {runs.fullname} "
        "WHERE customer_id = ANY($1::text[]) AND journey_id = ANY($2::text[]) "
        "GROUP BY journey_id, customer_id",
        customers,
        journey_list,
    )
    return {(row[0], row[1]): (row[2], row[3]) for row in rows}


async def save_runs(
    conn: AsyncConnection, *, changed: Sequence[Run], now: datetime, new: Set[str] = frozenset()
) -> None:
    """Write the runs (``new``: the ids of runs entered in this transaction, inserted;
    the others updated) and set or cancel their timers: one statement each."""
    if not changed:
        return
    latest = list({run.run_id: run for run in changed}.values())
    inserted = [r for r in latest if r.run_id in new]
    updated = [r for r in latest if r.run_id not in new]
    if inserted:
        await execute(
            conn,
            f"""
            INSERT INTO {runs.fullname} (run_id, journey_id, journey_version, customer_id,
                status, step_id, on_steps, holdout, variant, entered_at, wake_at, converted_at,
                exited_at, exit_reason, state, updated_at)
            SELECT u.*, $16::timestamptz FROM unnest($1::text[], $2::text[], $3::int[],
                $4::text[], $5::text[], $6::text[], $7::bool[], $8::bool[], $9::text[],
                $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::timestamptz[],
                $14::text[], $15::jsonb[]) AS u
            """,
            *columns_of(inserted, "run_id", "journey_id", "version", "customer_id"),
            *_mutable_columns(inserted, with_holdout=True),
            now,
        )
    if updated:
        # a plain UPDATE: no insert attempt and conflict check per row, and a step
        # change touches no indexed column (a HOT update)
        await execute(
            conn,
            f"""
            UPDATE {runs.fullname} AS r SET status = u.status, step_id = u.step_id,
                on_steps = u.on_steps, variant = u.variant, wake_at = u.wake_at,
                converted_at = u.converted_at, exited_at = u.exited_at,
                exit_reason = u.exit_reason, state = u.state, updated_at = $11::timestamptz
            FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::text[],
                $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::text[],
                $10::jsonb[]) AS u(run_id, status, step_id, on_steps, variant, wake_at,
                    converted_at, exited_at, exit_reason, state)
            WHERE r.run_id = u.run_id
            """,
            [r.run_id for r in updated],
            *_mutable_columns(updated, with_holdout=False),
            now,
        )
    await schedule(
        conn,
        table=run_timers,
        rows=[(r.run_id, r.wake_at) for r in latest if r.wake_at is not None],
    )
    await cancel(
        conn,
        table=run_timers,
        keys=[r.run_id for r in updated if r.wake_at is None],  # new runs have none yet
    )


def _mutable_columns(rows: Sequence[Run], *, with_holdout: bool) -> list[list[Any]]:
    """The columns a transition may change, in the order of both statements (with
    ``holdout`` and ``entered_at`` for an insert)."""
    columns: list[list[Any]] = [
        *columns_of(rows, "status", "step_id", "on_steps"),
    ]
    if with_holdout:
        columns.append([r.holdout for r in rows])
    columns.append([r.variant for r in rows])
    if with_holdout:
        columns.append([r.entered_at for r in rows])
    columns += [
        *columns_of(rows, "wake_at", "converted_at", "exited_at"),
        [r.exit_reason.value if r.exit_reason else None for r in rows],
        [_state(r) for r in rows],
    ]
    return columns


async def count_steps(conn: AsyncConnection, *, events: Iterable[JourneyRunEvent]) -> None:
    """Add a transition's ``journey.runs`` events to the per-step counts (one upsert)."""
    counts: Counter[tuple[str, int, str, str]] = Counter()
    for event in events:
        key = (event.journey_id, event.journey_version, event.step_id or "")
        if event.kind in (RunEventKind.STEP_REACHED, RunEventKind.ENTERED, RunEventKind.HELD_OUT):
            counts[(*key, "reached")] += 1
        elif event.kind is RunEventKind.CONVERTED:
            counts[(*key, "converted")] += 1
        elif event.kind is RunEventKind.EXITED:
            counts[(*key, "exited")] += 1
    if not counts:
        return
    rows: dict[tuple[str, int, str], list[int]] = {}
    for (journey_id, version, step_id, what), count in counts.items():
        slot = rows.setdefault((journey_id, version, step_id), [0, 0, 0])
        slot[("reached", "converted", "exited").index(what)] += count
    keys = sorted(rows)
    await execute(
        conn,
        f"""
        INSERT INTO {step_counts.fullname} AS c
            (journey_id, journey_version, step_id, reached, converted, exited)
        SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::bigint[], $5::bigint[],
            $6::bigint[])
        ON CONFLICT (journey_id, journey_version, step_id) DO UPDATE SET
            reached = c.reached + excluded.reached, converted = c.converted + excluded.converted,
            exited = c.exited + excluded.exited
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [rows[k][0] for k in keys],
        [rows[k][1] for k in keys],
        [rows[k][2] for k in keys],
    )


async def record_steps(conn: AsyncConnection, *, events: Sequence[JourneyRunEvent]) -> None:
    """Keep a transition's ``journey.runs`` events as its runs' histories (one insert;
    a redelivered event is the same ``(run_id, seq)`` and is kept once)."""
    if not events:
        return
    await execute(
        conn,
        f"""
        INSERT INTO {run_steps.fullname}
            (run_id, seq, kind, at, step_id, step_type, waiting_until, waiting_for,
             exit_reason, detail)
        SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::timestamptz[],
            $5::text[], $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::text[])
        ON CONFLICT (run_id, seq) DO NOTHING
        """,
        [e.run_id for e in events],
        [e.seq for e in events],
        [e.kind.value for e in events],
        [e.at for e in events],
        [e.step_id for e in events],
        [e.step_type for e in events],
        [e.waiting_until for e in events],
        [e.waiting_for or e.goal_event for e in events],
        [e.exit_reason.value if e.exit_reason else None for e in events],
        [e.detail for e in events],
    )


async def steps_of(conn: AsyncConnection, *, run_ids: Sequence[str]) -> dict[str, list[Any]]:
    """The histories of a page of runs (one query), each in order."""
    found: dict[str, list[Any]] = {run_id: [] for run_id in run_ids}
    if not run_ids:
        return found
    rows = await conn.execute(
        select(run_steps)
        .where(run_steps.c.run_id.in_(list(run_ids)))
        .order_by(run_steps.c.run_id, run_steps.c.seq)
    )
    for row in rows:
        found[row.run_id].append(row)
    return found


async def step_counts_of(conn: AsyncConnection, *, journey_id: str) -> dict[str, dict[str, int]]:
    """Per step over every version: reached, converted, exited, and waiting now."""
    found: dict[str, dict[str, int]] = {}
    rows = await conn.execute(
        select(
            step_counts.c.step_id,
            func.sum(step_counts.c.reached),
            func.sum(step_counts.c.converted),
            func.sum(step_counts.c.exited),
        )
        .where(step_counts.c.journey_id == journey_id)
        .group_by(step_counts.c.step_id)
    )
    for step_id, reached, converted, exited in rows:
        found[step_id] = {
            "entered": int(reached),
            "converted": int(converted),
            "exited": int(exited),
            "waiting": 0,
        }
    waiting = await conn.execute(
        select(runs.c.step_id, func.count())
        .where(runs.c.journey_id == journey_id, runs.c.status == "active")
        .group_by(runs.c.step_id)
    )
    for step_id, count in waiting:
        slot = found.setdefault(
            step_id or "", {"entered": 0, "converted": 0, "exited": 0, "waiting": 0}
        )
        slot["waiting"] = int(count)
    return found


# --- projections -------------------------------------------------------------------------


async def apply_memberships(
    conn: AsyncConnection, *, changes: Sequence[tuple[str, str, bool, datetime]]
) -> None:
    """Apply (customer, segment, entered, at) changes; the last one per pair wins."""
    last: dict[tuple[str, str], tuple[bool, datetime]] = {}
    for customer_id, segment_id, entered, at in changes:
        last[(customer_id, segment_id)] = (entered, at)
    enter = sorted(k for k, (entered, _) in last.items() if entered)
    leave = sorted(k for k, (entered, _) in last.items() if not entered)
    if enter:
        await execute(
            conn,
            f"INSERT INTO {memberships.fullname} (customer_id, segment_id, entered_at) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]) "
            "ON CONFLICT DO NOTHING",
            [k[0] for k in enter],
            [k[1] for k in enter],
            [last[k][1] for k in enter],
        )
    if leave:
        await execute(
            conn,
            f"DELETE FROM {memberships.fullname} m USING unnest($1::text[], $2::text[]) "
            "AS g(customer_id, segment_id) "
            "WHERE m.customer_id = g.customer_id AND m.segment_id = g.segment_id",
            [k[0] for k in leave],
            [k[1] for k in leave],
        )


async def forget_memberships(conn: AsyncConnection, *, customer_ids: Iterable[str]) -> None:
    ids = sorted(set(customer_ids))
    if ids:
        await execute(
            conn, f"DELETE FROM {memberships.fullname} WHERE customer_id = ANY($1::text[])", ids
        )


async def load_memberships(
    conn: AsyncConnection, *, customer_ids: Iterable[str]
) -> dict[str, frozenset[str]]:
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    rows = await fetch(
        conn,
        f"SELECT customer_id, segment_id FROM {memberships.fullname} "
        "WHERE customer_id = ANY($1::text[])",
        ids,
    )
    found: dict[str, set[str]] = {}
    for customer_id, segment_id in rows:
        found.setdefault(customer_id, set()).add(segment_id)
    return {k: frozenset(v) for k, v in found.items()}


async def save_winners(
    conn: AsyncConnection, *, decisions: Sequence[tuple[str, int, str, str, str, datetime]]
) -> None:
    """(journey, version, step, variant, decision id, decided at); the first winner stays."""
    for journey_id, version, step_id, variant, decision_id, at in decisions:
        await execute(
            conn,
            f"INSERT INTO {winners.fullname} (journey_id, journey_version, step_id, variant, "
            "decision_id, decided_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            journey_id,
            version,
            step_id,
            variant,
            decision_id,
            at,
        )


# --- journeys ----------------------------------------------------------------------------


async def get_journey(conn: AsyncConnection, *, journey_id: str) -> Any:
    return (await conn.execute(select(journeys).where(journeys.c.id == journey_id))).first()


async def list_journeys(conn: AsyncConnection) -> list[Any]:
    return list(await conn.execute(select(journeys).order_by(journeys.c.id)))


async def journey_summaries(conn: AsyncConnection, *, after: str | None, limit: int) -> list[Any]:
    """A page of journeys by id with their live counts, in one statement: runs active
    now (``ix_runs_journey``), and conversions and exits summed from the step counts."""
    active = (
        select(func.count())
        .select_from(runs)
        .where(runs.c.journey_id == journeys.c.id, runs.c.status == "active")
        .scalar_subquery()
    )
    converted = (
        select(func.coalesce(func.sum(step_counts.c.converted), 0))
        .where(step_counts.c.journey_id == journeys.c.id)
        .scalar_subquery()
    )
    exited = (
        select(func.coalesce(func.sum(step_counts.c.exited), 0))
        .where(step_counts.c.journey_id == journeys.c.id)
        .scalar_subquery()
    )
    query = select(
        journeys.c.id,
        journeys.c.name,
        journeys.c.status,
        journeys.c.version,
        journeys.c.updated_at,
        active.label("active"),
        converted.label("converted"),
        exited.label("exited"),
    )
    if after is not None:
        query = query.where(journeys.c.id > after)
    return list(await conn.execute(query.order_by(journeys.c.id).limit(limit)))


async def lock_journey(conn: AsyncConnection, *, journey_id: str) -> Any:
    return (
        await conn.execute(select(journeys).where(journeys.c.id == journey_id).with_for_update())
    ).first()


async def set_journey(
    conn: AsyncConnection, *, journey_id: str, now: datetime, **values: Any
) -> None:
    await conn.execute(
        update(journeys).where(journeys.c.id == journey_id).values(updated_at=now, **values)
    )


async def journey_versions(conn: AsyncConnection, *, journey_id: str) -> list[Any]:
    return list(
        await conn.execute(
            select(versions).where(versions.c.journey_id == journey_id).order_by(versions.c.version)
        )
    )
