"""The embedded PostgreSQL applies its server settings, restarting once when one needs it."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import asyncpg

from tenure.embedded import EmbeddedPostgres, machine_sized_settings


async def _show(url: str, *names: str) -> list[str]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        return [await conn.fetchval(f"SHOW {name}") for name in names]
    finally:
        await conn.close()


async def test_settings_reach_the_server_also_those_that_need_a_restart(tmp_path: Path) -> None:
    settings = {"shared_buffers": "144MB", "work_mem": "7MB"}
    server = EmbeddedPostgres(tmp_path / "pg", database="settings_test", settings=settings)
    url = await asyncio.to_thread(server.start)
    try:
        assert await _show(url, "shared_buffers", "work_mem") == ["144MB", "7MB"]
    finally:
        await asyncio.to_thread(server.stop)
    again = EmbeddedPostgres(tmp_path / "pg", database="settings_test", settings=settings)
    url = await asyncio.to_thread(again.start)  # a second start finds them set: no restart
    try:
        assert await _show(url, "shared_buffers", "work_mem") == ["144MB", "7MB"]
    finally:
        await asyncio.to_thread(again.stop)


def test_shared_buffers_are_a_quarter_of_memory_within_bounds() -> None:
    found = re.fullmatch(r"(\d+)MB", machine_sized_settings()["shared_buffers"])
    assert found is not None and 128 <= int(found.group(1)) <= 1024
