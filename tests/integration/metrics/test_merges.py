"""Anonymous → known: an id merge announced on ``profiles`` moves the old id's runs to
the known id, whether the runs came before the merge or after it (another partition);
the tombstone and the known id's update announce one merge, applied once; a run
converts once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import text

from shared.events import journey_runs, profiles
from shared.events.profiles import ProfileUpdate
from tests.integration.metrics.conftest import Stack
from tests.integration.metrics.test_kpi_fixes import _converted, _run


async def _runs(stack: Stack, journey: str, until: int) -> list[tuple[str, str, bool]]:
    rows: list[tuple[str, str, bool]] = []
    for _ in range(300):
        async with stack.runtime.engine.connect() as conn:
            found = await conn.execute(
                text(
                    "SELECT run_id, customer_id, converted_at IS NOT NULL FROM metrics.runs "
                    "WHERE journey_id = :j ORDER BY run_id"
                ),
                {"j": journey},
            )
            rows = [(r[0], r[1], r[2]) for r in found]
        if sum(1 for r in rows if r[2]) >= until and len(rows) == 2:
            return rows
        await asyncio.sleep(0.05)
    return rows


async def test_runs_of_a_merged_id_move_to_the_known_customer_before_and_after(
    stack: Stack,
) -> None:
    journey = f"j-{uuid.uuid4().hex[:8]}"
    anonymous, known = f"anon-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}"
    at = stack.clock.now - timedelta(hours=2)
    # a run of the anonymous id before the merge
    await stack.send(journey_runs.TOPIC, _run(journey, "r1", anonymous, at, holdout=False))
    await _runs(stack, journey, 0)
    merge = [
        ProfileUpdate(customer_id=known, version=2, merged_from=[anonymous], updated_at=at),
        ProfileUpdate(
            customer_id=anonymous, version=3, deleted=True, merged_into=known, updated_at=at
        ),
    ]
    await stack.send(profiles.TOPIC, *merge)
    # a second run of the anonymous id consumed after the merge (another partition)
    await stack.send(journey_runs.TOPIC, _run(journey, "r2", anonymous, at, holdout=False))
    await stack.send(profiles.TOPIC, *merge)  # announced again: nothing changes
    later = at + timedelta(minutes=30)
    await stack.send(
        journey_runs.TOPIC,
        _converted(journey, "r1", known, at, later, holdout=False),
        _converted(journey, "r1", known, at, later, holdout=False),
    )
    rows = await _runs(stack, journey, 1)
    assert rows == [("r1", known, True), ("r2", known, False)]
