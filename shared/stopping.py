"""Waiting inside a loop that stops on shutdown."""

from __future__ import annotations

import asyncio
import contextlib


async def sleep_unless_stopped(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``, waking at once when ``stopping`` is set; return whether it is."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    return stopping.is_set()
