"""Anonymous → known: an id merged into another (``profiles`` ``mergedFrom`` on the
known id's update, ``mergedInto`` on the old id's tombstone) takes its runs along.

Both messages announce the same merge (either may come first: they are keyed by
different ids), and applying one is idempotent. A merge, inside the batch's
transaction:

- records ``previous_id → customer_id`` (ids merged into the old id earlier follow);
- re-keys the old id's runs to the known id: their timers are the runs' (by run id),
  so waits go on, and later sends go to the known customer; where both have a run in
  flight in the same journey, the known customer's is kept and the old id's stops
  (``stopped``, detail ``merged into …``): one run, one reminder;
- from then on an input of the old id (a late event, keyed by it, on another
  partition) is redirected to the known id (:func:`lock_and_resolve`).

Every batch takes a transaction-level advisory lock per customer id it touches (in id
order) before it reads the aliases, so a batch of the old id's events and a merge of
that id, on two replicas, run one after the other: the batch either ran before (its
runs are then re-keyed) or sees the alias.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from services.journey import repository as repo
from services.journey.machine import Facts, Stop
from services.journey.models import AliasRow
from services.journey.processing import Work
from shared.db.aliases import record_alias, resolve_aliases
from shared.db.driver import execute
from shared.db.tables import table_of
from shared.events.journey_runs import ExitReason

_ALIASES = table_of(AliasRow).fullname


async def lock_and_resolve(conn: AsyncConnection, *, ids: Iterable[str]) -> dict[str, str]:
    """Lock ``ids`` against concurrent merges (advisory, in id order) and return
    ``previous_id -> customer_id`` for those that were merged into another."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    await execute(
        conn,
        "SELECT pg_advisory_xact_lock(hashtext('journey.customer:' || id)) "
        "FROM unnest($1::text[]) AS id",
        wanted,
    )
    return await resolve_aliases(conn, _ALIASES, wanted)


async def apply_merges(
    conn: AsyncConnection,
    work: Work,
    *,
    pairs: Sequence[tuple[str, str]],
    resolved: dict[str, str],
    now: datetime,
) -> set[str]:
    """Apply the merges (their ids locked by :func:`lock_and_resolve`, whose answer
    ``resolved`` is, and is updated); return the ids whose runs moved."""
    moved: set[str] = set()
    for previous, known in pairs:
        old = resolved.get(previous, previous)
        new = resolved.get(known, known)
        if old == new:
            continue
        await record_alias(conn, _ALIASES, previous_id=old, customer_id=new, merged_at=now)
        for source, target in list(resolved.items()):
            if target == old:
                resolved[source] = new
        resolved[old] = new
        active = await repo.lock_active_runs(conn, customer_ids=[old, new])
        kept = {run.journey_id for run in active.get(new, [])}
        stopped: list[str] = []
        for run in active.get(old, []):
            if run.journey_id in kept:  # one run per journey: the known customer's
                work.apply(run, Stop(ExitReason.STOPPED, f"merged into {new}"), Facts())
                stopped.append(run.run_id)
            else:
                kept.add(run.journey_id)
        await execute(
            conn,
            f"UPDATE {repo.runs.fullname} SET customer_id = $2 "
            "WHERE customer_id = $1 AND NOT (run_id = ANY($3::text[]))",
            old,
            new,
            stopped,
        )
        moved.add(old)
    return moved
