"""The experiments as the API reads and changes them (the evaluator's statements are
in :mod:`services.metrics.experiments`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from services.metrics.models import HOLDOUT_STEP

Driver = Any  # asyncpg.Connection

_COLUMNS = (
    "journey_id, journey_version, step_id, control, verdict, winner, p_value, "
    "result::text, evaluated_at, decision_id, decided_at"
)


@dataclass(frozen=True, slots=True)
class ExperimentRow:
    journey_id: str
    journey_version: int
    step_id: str
    control: str | None
    verdict: str
    winner: str | None
    p_value: float | None
    result: dict[str, Any] | None
    evaluated_at: datetime | None
    decision_id: str | None
    decided_at: datetime | None

    @property
    def kind(self) -> str:
        return "holdout" if self.step_id == HOLDOUT_STEP else "split"


def _row(r: Any) -> ExperimentRow:
    return ExperimentRow(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], orjson.loads(r[7]) if r[7] else None, *r[8:]
    )


async def list_experiments(driver: Driver, *, journey_id: str | None) -> list[ExperimentRow]:
    rows = await driver.fetch(
        f"SELECT {_COLUMNS} FROM metrics.experiments "
        "WHERE $1::text IS NULL OR journey_id = $1 ORDER BY 1, 2, 3",
        journey_id,
    )
    return [_row(r) for r in rows]


async def get_experiment(
    driver: Driver, *, journey_id: str, journey_version: int, step_id: str
) -> ExperimentRow | None:
    row = await driver.fetchrow(
        f"SELECT {_COLUMNS} FROM metrics.experiments "
        "WHERE journey_id = $1 AND journey_version = $2 AND step_id = $3",
        journey_id,
        journey_version,
        step_id,
    )
    return None if row is None else _row(row)


async def has_variant(
    driver: Driver, *, journey_id: str, journey_version: int, step_id: str, variant: str
) -> bool:
    found = await driver.fetchval(
        "SELECT count(*) FROM metrics.experiment_counts WHERE journey_id = $1 "
        "AND journey_version = $2 AND step_id = $3 AND variant = $4",
        journey_id,
        journey_version,
        step_id,
        variant,
    )
    return bool(found)


async def set_control(
    driver: Driver, *, journey_id: str, journey_version: int, step_id: str, control: str
) -> bool:
    """Set the experiment's control; a new control restarts the running minima of the
    sequential p-values. False when there is no such experiment."""
    updated = await driver.fetchval(
        """
        UPDATE metrics.experiments SET control = $4, min_p_values = CASE
                WHEN $4 IS DISTINCT FROM control THEN '{}'::jsonb ELSE min_p_values END
        WHERE journey_id = $1 AND journey_version = $2 AND step_id = $3 RETURNING 1
        """,
        journey_id,
        journey_version,
        step_id,
        control,
    )
    return updated is not None
