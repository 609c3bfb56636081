"""A loop's sleep ends at once on shutdown, and says whether it was one."""

from __future__ import annotations

import asyncio

from shared.stopping import PeriodicJob, StoppableLoop, sleep_unless_stopped


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


async def test_a_periodic_job_runs_at_start_and_each_interval_and_outlives_a_failure() -> None:
    runs: list[int] = []
    four_rounds = asyncio.Event()

    async def job() -> None:
        runs.append(len(runs))
        if len(runs) == 4:
            four_rounds.set()
        if len(runs) == 2:
            raise RuntimeError("a failing round")

    periodic = PeriodicJob(job, name="test job", interval_s=0.01, at_start=True)
    running = asyncio.create_task(periodic.run())
    await asyncio.wait_for(four_rounds.wait(), timeout=5)
    periodic.signal_shutdown()
    await asyncio.wait_for(running, timeout=1)
    assert runs[:4] == [0, 1, 2, 3]  # the second round failed; the loop went on


async def test_a_periodic_job_without_an_interval_runs_only_at_start() -> None:
    runs: list[None] = []

    async def job() -> None:
        runs.append(None)

    periodic = PeriodicJob(job, name="test job", interval_s=0, at_start=True)
    running = asyncio.create_task(periodic.run())
    await asyncio.sleep(0.05)
    assert not running.done()
    periodic.signal_shutdown()
    await asyncio.wait_for(running, timeout=1)
    assert runs == [None]
