"""Waiting inside a loop that stops on shutdown."""

from __future__ import annotations

import asyncio
import contextlib


async def sleep_unless_stopped(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``, waking at once when ``stopping`` is set; return whether it is."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    return stopping.is_set()


class StoppableLoop:
    """Base of the loops a service runs in the background until shutdown: the consumer
    runner, the outbox relay, the sweeper, the refit loop, the heap trimmer."""

    def __init__(self) -> None:
        self._stopping = asyncio.Event()

    def signal_shutdown(self) -> None:
        self._stopping.set()

    async def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds``, waking at once on shutdown; return whether it was signalled."""
        return await sleep_unless_stopped(self._stopping, seconds)
