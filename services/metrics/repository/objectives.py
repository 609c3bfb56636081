"""SMART objectives, stored as JSON documents (``ObjectiveCreate``)."""

from __future__ import annotations

from typing import Any

from services.metrics.schemas import ObjectiveCreate

Driver = Any  # asyncpg.Connection


async def insert_objective(driver: Driver, objective: ObjectiveCreate) -> bool:
    """False when an objective has this id already."""
    inserted = await driver.fetchval(
        "INSERT INTO metrics.objectives (id, document) VALUES ($1, $2::jsonb) "
        "ON CONFLICT DO NOTHING RETURNING 1",
        objective.id,
        objective.model_dump_json(),
    )
    return inserted is not None


async def list_objectives(driver: Driver) -> list[ObjectiveCreate]:
    rows = await driver.fetch("SELECT document::text FROM metrics.objectives ORDER BY id")
    return [ObjectiveCreate.model_validate_json(r[0]) for r in rows]


async def get_objective(driver: Driver, objective_id: str) -> ObjectiveCreate | None:
    raw = await driver.fetchval(
        "SELECT document::text FROM metrics.objectives WHERE id = $1", objective_id
    )
    return None if raw is None else ObjectiveCreate.model_validate_json(raw)


async def delete_objective(driver: Driver, objective_id: str) -> bool:
    deleted = await driver.fetchval(
        "DELETE FROM metrics.objectives WHERE id = $1 RETURNING 1", objective_id
    )
    return deleted is not None
