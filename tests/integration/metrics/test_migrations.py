"""The metrics migrations build exactly the tables its models describe (alembic's
autogenerate comparison finds no difference), and go down and up again."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from services.metrics.models import metadata
from shared.db.engine import async_url
from shared.db.migrations import alembic_config, upgrade
from tenure.services import SERVICES
from tests.conftest import NewDatabase

MIGRATIONS = SERVICES["metrics"].migrations_dir


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "include_schemas": True,
            "include_name": lambda name, kind, _: kind != "schema" or name == "metrics",
            "include_object": lambda obj, name, kind, *_: name != "alembic_version",
            "compare_type": True,
            "compare_server_default": True,
        },
    )
    return list(compare_metadata(context, metadata))


async def _compare(url: str) -> tuple[list[Any], list[str]]:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(_differences)
            functions = await conn.scalars(
                text(
                    "SELECT proname FROM pg_proc WHERE pronamespace = 'metrics'::regnamespace "
                    "ORDER BY 1"
                )
            )
            return differences, list(functions)
    finally:
        await engine.dispose()


async def test_head_matches_the_models_and_downgrades_cleanly(new_database: NewDatabase) -> None:
    url = await new_database()
    expected: tuple[list[Any], list[str]] = ([], ["period_shift", "period_start"])
    await asyncio.to_thread(upgrade, script_location=MIGRATIONS, database_url=url)
    assert await _compare(url) == expected
    config = alembic_config(script_location=MIGRATIONS, database_url=url)
    await asyncio.to_thread(command.downgrade, config, "base")
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            left = await conn.scalars(
                text(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'metrics'"
                )
            )
            assert list(left) == ["alembic_version"]
    finally:
        await engine.dispose()
    await asyncio.to_thread(upgrade, script_location=MIGRATIONS, database_url=url)
    assert await _compare(url) == expected


async def test_0003_cuts_funnel_reasons_to_their_codes(new_database: NewDatabase) -> None:
    """Free-text reasons (a provider's answer quoting an address) become their code,
    their counts merged into the code's row."""
    import asyncpg

    url = await new_database()
    await asyncio.to_thread(upgrade, script_location=MIGRATIONS, database_url=url, revision="0002")
    db = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        key = "'2026-12-01', 'j', 's', '', 'email', 'failed'"
        await db.execute(
            "INSERT INTO metrics.funnel_daily "
            "(day, journey_id, step_id, variant, channel, metric, reason, count) VALUES "
            f"({key}, 'provider_error', 1), "
            f"({key}, 'provider_error: smtp: 550 <alice@example.com>', 2), "
            f"({key}, 'provider_error: smtp: 550 <bob@example.com>', 3), "
            f"({key}, 'no template ''x''', 4), "
            "('2026-12-01', 'j', 's', '', 'email', 'sent', '', 5)"
        )
        await asyncio.to_thread(upgrade, script_location=MIGRATIONS, database_url=url)
        rows = await db.fetch(
            "SELECT metric, reason, count FROM metrics.funnel_daily ORDER BY metric, reason"
        )
    finally:
        await db.close()
    assert [tuple(r) for r in rows] == [
        ("failed", "other", 4),
        ("failed", "provider_error", 6),
        ("sent", "", 5),
    ]
