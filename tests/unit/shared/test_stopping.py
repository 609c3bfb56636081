"""A loop's sleep ends at once on shutdown, and says whether it was one."""

from __future__ import annotations

import asyncio

from shared.stopping import StoppableLoop, sleep_unless_stopped


async def test_the_sleep_runs_its_length_when_nothing_stops_it() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await sleep_unless_stopped(asyncio.Event(), 0.05) is False
    assert loop.time() - started >= 0.045


async def test_shutdown_ends_the_sleep_at_once() -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(0.02, stopping.set)
    started = loop.time()
    assert await sleep_unless_stopped(stopping, 30) is True
    assert loop.time() - started < 1


async def test_a_loop_pauses_until_shutdown_is_signalled() -> None:
    loop = StoppableLoop()
    assert await loop._pause(0.01) is False
    waiting = asyncio.create_task(loop._pause(30))
    await asyncio.sleep(0)
    loop.signal_shutdown()
    assert await asyncio.wait_for(waiting, timeout=1) is True
