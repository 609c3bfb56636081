"""Anonymous → known: the rows of an id merged into another move to the known id.

``profiles`` announces a merge twice (the known id's ``mergedFrom``, the old id's
tombstone ``mergedInto``); both re-key the same rows, so applying either, or both, or
one again, ends the same. Runs, split exposures and conversions are keyed by run id
(a run converts once, whoever it belongs to), so moving ``runs.customer_id`` and the
sends' ``touches`` (what a goal event is credited to) counts nothing twice.

The old id's ``journey.runs`` and ``dispatch.requests`` messages are keyed by it, on
other partitions than the merge: one may come after it. The merge is kept in
``metrics.aliases``, and the batch's new runs and touches of a merged-away id are
moved right after they are written (:func:`redirect_runs`, :func:`redirect_touches`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Driver = Any  # asyncpg.Connection


async def apply_merges(driver: Driver, pairs: Sequence[tuple[str, str]]) -> None:
    """Record the ``(old, known)`` pairs (ids merged into an old id follow it) and
    re-key the old ids' runs and touches to the known id."""
    if not pairs:
        return
    for old, known in pairs:
        await driver.execute(
            "UPDATE metrics.aliases SET customer_id = $2 WHERE customer_id = $1", old, known
        )
        await driver.execute(
            # the known id may itself have been merged on since (a chain seen out of order)
            "INSERT INTO metrics.aliases (previous_id, customer_id) "
            "SELECT $1, coalesce((SELECT customer_id FROM metrics.aliases "
            "WHERE previous_id = $2), $2) "
            "ON CONFLICT (previous_id) DO UPDATE SET customer_id = EXCLUDED.customer_id",
            old,
            known,
        )
    olds = [p[0] for p in pairs]
    for table in ("metrics.runs", "metrics.touches"):
        await driver.execute(
            f"""
            UPDATE {table} AS t SET customer_id = a.customer_id
            FROM metrics.aliases AS a
            WHERE a.previous_id = ANY($1::text[]) AND t.customer_id = a.previous_id
            """,
            olds,
        )


async def redirect_runs(driver: Driver, run_ids: Sequence[str]) -> None:
    """Move the batch's new runs of merged-away ids to the known id."""
    await _redirect(driver, "metrics.runs", "run_id", run_ids)


async def redirect_touches(driver: Driver, dispatch_ids: Sequence[str]) -> None:
    """Move the batch's new touches of merged-away ids to the known id."""
    await _redirect(driver, "metrics.touches", "dispatch_id", dispatch_ids)


async def _redirect(driver: Driver, table: str, key: str, keys: Sequence[str]) -> None:
    """Re-key the rows of ``table`` whose ``key`` is one of ``keys`` and whose customer
    was merged away to the known id."""
    if keys:
        await driver.execute(
            f"""
            UPDATE {table} AS t SET customer_id = a.customer_id
            FROM metrics.aliases AS a
            WHERE t.{key} = ANY($1::text[]) AND a.previous_id = t.customer_id
            """,
            list(keys),
        )
