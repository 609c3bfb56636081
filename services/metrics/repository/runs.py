"""The batch's journey runs: runs, split exposures and conversions, and the
per-arm experiment counts the evaluator reads.

Set-based statements on the asyncpg connection, inside the batch's transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from services.metrics.fold import Exposure, RunStart
from services.metrics.models import ENTRANTS_VARIANT, HOLDOUT_STEP, HOLDOUT_VARIANT
from shared.db.driver import columns_of

Driver = Any  # asyncpg.Connection
#: experiment arm: (journey, version, step, variant)
ArmKey = tuple[str, int, str, str]


async def apply_runs(
    driver: Driver,
    *,
    runs: Sequence[RunStart],
    exposures: Sequence[Exposure],
    conversions: Sequence[tuple[str, datetime]],
) -> tuple[Counter[ArmKey], Counter[ArmKey]]:
    """Runs, split exposures and conversions; return (exposed, converted) per arm,
    counting each run once per arm. Runs of one customer come in order (one
    partition), so a conversion finds the exposures before it."""
    exposed: Counter[ArmKey] = Counter()
    converted: Counter[ArmKey] = Counter()
    if runs:
        rows = await driver.fetch(
            """
            INSERT INTO metrics.runs
                (run_id, journey_id, journey_version, customer_id, entered_at, holdout)
            SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[],
                                 $5::timestamptz[], $6::bool[])
            ON CONFLICT DO NOTHING RETURNING journey_id, journey_version, holdout
            """,
            *columns_of(
                runs,
                "run_id",
                "journey_id",
                "journey_version",
                "customer_id",
                "entered_at",
                "holdout",
            ),
        )
        for journey, version, holdout in rows:
            exposed[(journey, version, HOLDOUT_STEP, _arm(holdout))] += 1
    if exposures:
        rows = await driver.fetch(
            """
            INSERT INTO metrics.run_variants
                (run_id, step_id, journey_id, journey_version, variant, at)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[],
                                 $6::timestamptz[])
            ON CONFLICT DO NOTHING RETURNING journey_id, journey_version, step_id, variant
            """,
            *columns_of(
                exposures, "run_id", "step_id", "journey_id", "journey_version", "variant", "at"
            ),
        )
        for journey, version, step, variant in rows:
            exposed[(journey, version, step, variant)] += 1
    if conversions:
        ids = [c[0] for c in conversions]
        ats = [c[1] for c in conversions]
        rows = await driver.fetch(
            """
            WITH c AS (
                SELECT run_id, min(at) AS at FROM unnest($1::text[], $2::timestamptz[])
                    AS c(run_id, at) GROUP BY run_id
            )
            UPDATE metrics.runs r SET converted_at = c.at FROM c
            WHERE r.run_id = c.run_id AND r.converted_at IS NULL
            RETURNING r.journey_id, r.journey_version, r.holdout
            """,
            ids,
            ats,
        )
        for journey, version, holdout in rows:
            converted[(journey, version, HOLDOUT_STEP, _arm(holdout))] += 1
        rows = await driver.fetch(
            """
            WITH c AS (
                SELECT run_id, min(at) AS at FROM unnest($1::text[], $2::timestamptz[])
                    AS c(run_id, at) GROUP BY run_id
            )
            UPDATE metrics.run_variants v SET converted_at = c.at FROM c
            WHERE v.run_id = c.run_id AND v.converted_at IS NULL AND v.at <= c.at
            RETURNING v.journey_id, v.journey_version, v.step_id, v.variant
            """,
            ids,
            ats,
        )
        for key in rows:
            converted[(key[0], key[1], key[2], key[3])] += 1
    arms = sorted(set(exposed) | set(converted))
    if arms:
        await driver.execute(
            """
            WITH given AS (
                SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[],
                                     $5::bigint[], $6::bigint[])
                    AS g(journey_id, journey_version, step_id, variant, exposed, converted)
            ), experiments AS (
                INSERT INTO metrics.experiments (journey_id, journey_version, step_id)
                SELECT DISTINCT journey_id, journey_version, step_id FROM given ORDER BY 1, 2, 3
                ON CONFLICT DO NOTHING
            )
            INSERT INTO metrics.experiment_counts AS e
                (journey_id, journey_version, step_id, variant, exposed, converted)
            SELECT * FROM given
            ON CONFLICT (journey_id, journey_version, step_id, variant) DO UPDATE
            SET exposed = e.exposed + EXCLUDED.exposed, converted = e.converted + EXCLUDED.converted
            """,
            [a[0] for a in arms],
            [a[1] for a in arms],
            [a[2] for a in arms],
            [a[3] for a in arms],
            [exposed[a] for a in arms],
            [converted[a] for a in arms],
        )
    return exposed, converted


def _arm(holdout: bool) -> str:
    return HOLDOUT_VARIANT if holdout else ENTRANTS_VARIANT
