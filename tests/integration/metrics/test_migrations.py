"""The metrics migrations go up, down and up again; the tables the shared factories
describe (outbox, claims) match what the migration builds."""

from __future__ import annotations

import asyncio

import asyncpg
from alembic import command

from shared.db.migrations import alembic_config, upgrade
from tenure.services import SERVICES
from tests.conftest import NewDatabase

MIGRATIONS = SERVICES["metrics"].migrations_dir


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        rows = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'metrics'"
        )
        columns = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'metrics' AND table_name IN ('outbox', 'processed_messages')"
        )
    finally:
        await conn.close()
    from services.metrics.models import outbox, processed_messages

    present = {r[0] for r in rows}
    for table in (outbox, processed_messages):
        if table.name in present:
            assert {c for t, c in columns if t == table.name} == {c.name for c in table.columns}
    return {r[0] for r in rows}


async def test_up_down_up(new_database: NewDatabase) -> None:
    url = await new_database()
    await asyncio.to_thread(upgrade, script_location=MIGRATIONS, database_url=url)
    tables = await _tables(url)
    assert {
        "customers",
        "active_periods",
        "period_counts",
        "cohort_counts",
        "funnel_daily",
        "experiments",
        "objectives",
        "outbox",
        "processed_messages",
    } <= tables
    config = alembic_config(script_location=MIGRATIONS, database_url=url)
    await asyncio.to_thread(command.downgrade, config, "base")
    assert await _tables(url) == {"alembic_version"}
    await asyncio.to_thread(upgrade, script_location=MIGRATIONS, database_url=url)
    assert await _tables(url) == tables
