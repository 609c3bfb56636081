"""The watch of dispatch requests: a request the broker lost, or whose outcome it lost,
is requested again under the same ``dispatch_id`` until a final outcome comes.

Every request a transition emits is written to ``dispatch_watch`` beside the outbox
message (:func:`watch_requests`, in :meth:`~services.journey.processing.Work.write`),
due ``first`` later (a setting, 15 min by default: past the dispatcher's own wait for a
profile). A final outcome (sent, suppressed, failed) removes it; a ``deferred`` one
moves it past the deferral. When it comes due, the sweep (:func:`watch_sweep`) puts the
request's bytes, as first published, in the outbox again, and watches again after
twice the last pause (at most :data:`MAX_PAUSE`). The dispatcher keeps one delivery per
``dispatch_id``: a request it never got is decided now; one it holds sends nothing,
and its final outcome, if it has one, is published again (the journey and metrics
keep one per ``outcome_id``). A lost message delays a final outcome; it never drops it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.journey.metrics import REQUESTS_REPEATED
from services.journey.models import dispatch_watch, outbox
from shared.db.driver import columns_of, execute
from shared.db.outbox import enqueue
from shared.db.timers import TimerSweep, firing
from shared.events.registry import DISPATCH_REQUESTS
from shared.kafka.producer import Message

#: the longest pause between two requests of one dispatch
MAX_PAUSE = timedelta(hours=6)


def pause(first: timedelta, attempts: int) -> timedelta:
    """The pause before the request after ``attempts`` repeats: ``first``, doubling."""
    doubled: timedelta = first * (2 ** min(attempts, 20))
    return min(doubled, max(first, MAX_PAUSE))


async def watch_requests(
    conn: AsyncConnection, *, messages: Sequence[tuple[str, Message]], due_at: datetime
) -> None:
    """Watch these requests (``(dispatch_id, message)``); one already watched keeps its
    row (a transition replayed)."""
    if not messages:
        return
    await execute(
        conn,
        f"INSERT INTO {dispatch_watch.fullname} (dispatch_id, customer_id, request, due_at) "
        "SELECT d, c, r, $4 FROM unnest($1::text[], $2::text[], $3::bytea[]) AS u(d, c, r) "
        "ON CONFLICT (dispatch_id) DO NOTHING",
        [dispatch_id for dispatch_id, _ in messages],
        [(m.key or b"").decode() for _, m in messages],
        [m.value for _, m in messages],
        due_at,
    )


async def settle(conn: AsyncConnection, *, dispatch_ids: Sequence[str]) -> None:
    """These dispatches have their final outcome: stop watching them."""
    if dispatch_ids:
        await execute(
            conn,
            f"DELETE FROM {dispatch_watch.fullname} WHERE dispatch_id = ANY($1::text[])",
            sorted(set(dispatch_ids)),
        )


async def postpone(
    conn: AsyncConnection, *, until: Sequence[tuple[str, datetime]], first: timedelta
) -> None:
    """These dispatches were deferred (quiet hours, a cap, a send time): watch them from
    ``first`` after the deferral's end."""
    if until:
        await execute(
            conn,
            f"UPDATE {dispatch_watch.fullname} AS w SET due_at = GREATEST(w.due_at, u.at + $3) "
            "FROM unnest($1::text[], $2::timestamptz[]) AS u(d, at) WHERE w.dispatch_id = u.d",
            [d for d, _ in until],
            [at for _, at in until],
            first,
        )


def watch_round(
    *,
    engine: AsyncEngine,
    clock: Callable[[], datetime],
    first: timedelta,
    chunk: int,
    on_commit: Callable[[], None] = lambda: None,
) -> Callable[[], Awaitable[int]]:
    """One round: the due dispatches' requests to the outbox again, watched again."""

    async def fire(conn: AsyncConnection, rows: list[Row[Any]], now: datetime) -> None:
        await enqueue(
            session=conn,
            outbox=outbox,
            messages=[
                Message(DISPATCH_REQUESTS.name, row.customer_id.encode(), row.request)
                for row in rows
            ],
        )
        await execute(
            conn,
            f"INSERT INTO {dispatch_watch.fullname} "
            "(dispatch_id, customer_id, request, attempts, due_at) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int[], "
            "$5::timestamptz[])",
            *columns_of(rows, "dispatch_id", "customer_id", "request"),
            [row.attempts + 1 for row in rows],
            [now + pause(first, row.attempts + 1) for row in rows],
        )
        REQUESTS_REPEATED.inc(len(rows))

    return firing(
        engine=engine,
        table=dispatch_watch,
        fire=fire,
        clock=clock,
        chunk=chunk,
        on_commit=on_commit,
    )


def watch_sweep(
    *,
    engine: AsyncEngine,
    clock: Callable[[], datetime],
    first: timedelta,
    chunk: int = 500,
    interval_s: float = 5.0,
    on_commit: Callable[[], None] = lambda: None,
) -> TimerSweep:
    return TimerSweep(
        watch_round(engine=engine, clock=clock, first=first, chunk=chunk, on_commit=on_commit),
        chunk=chunk,
        interval_s=interval_s,
        name="dispatch watch",
    )
