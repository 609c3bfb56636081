"""Waiting inside a loop that stops on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from shared.retry import FailureStreak, sleep_unless_stopped

log = logging.getLogger(__name__)

__all__ = ["PeriodicJob", "StoppableLoop", "sleep_unless_stopped"]


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


class PeriodicJob(StoppableLoop):
    """Run ``job`` every ``interval_s`` until shutdown (0: never on its own), and once at
    the start when ``at_start``; a failure is logged (one line per failure streak and
    interval, :class:`~shared.retry.FailureStreak`) and the next round tries again."""

    def __init__(
        self,
        job: Callable[[], Awaitable[Any]],
        *,
        name: str,
        interval_s: float,
        at_start: bool = False,
    ) -> None:
        self._job = job
        self._name = name
        self._interval_s = interval_s
        self._at_start = at_start
        self._streak = FailureStreak(name, logger=log)
        super().__init__()

    async def run(self) -> None:
        if self._at_start:
            await self._run_job()
        if self._interval_s <= 0:
            await self._stopping.wait()
            return
        while not await self._pause(self._interval_s):
            await self._run_job()

    async def _run_job(self) -> None:
        try:
            await self._job()
        except Exception as exc:
            self._streak.failed(exc, delay_s=self._interval_s)
        else:
            self._streak.succeeded()
