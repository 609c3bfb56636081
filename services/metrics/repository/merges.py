"""Anonymous → known: the rows of an id merged into another move to the known id.

``profiles`` announces a merge twice (the known id's ``mergedFrom``, the old id's
tombstone ``mergedInto``); both re-key the same rows, so applying either, or both, or
one again, ends the same. Runs, split exposures and conversions are keyed by run id
(a run converts once, whoever it belongs to), so moving ``runs.customer_id`` and the
sends' ``touches`` (what a goal event is credited to) counts nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Driver = Any  # asyncpg.Connection


async def apply_merges(driver: Driver, pairs: Sequence[tuple[str, str]]) -> None:
    """Re-key the ``(old, known)`` pairs' runs and touches to the known id."""
    if not pairs:
        return
    for table in ("metrics.runs", "metrics.touches"):
        await driver.execute(
            f"""
            UPDATE {table} AS t SET customer_id = m.known
            FROM unnest($1::text[], $2::text[]) AS m(old, known)
            WHERE t.customer_id = m.old
            """,
            [p[0] for p in pairs],
            [p[1] for p in pairs],
        )
