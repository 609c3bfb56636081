"""Heap trimming: memory that ``free`` kept is handed back, on a schedule."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from shared.memory import HeapTrimmer, trim_heap

pytestmark = pytest.mark.skipif(not trim_heap(), reason="glibc's malloc_trim is not available")

# Many small allocations (below malloc's mmap threshold, so they come from the heap),
# one live allocation above them so free() cannot shrink the heap from its top, then
# everything else freed: the RSS stays up until malloc_trim returns the free pages.
_PROGRAM = textwrap.dedent(
    """
    import ctypes, sys
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    blocks = [libc.malloc(4000) for _ in range(50_000)]
    for b in blocks:
        ctypes.memset(b, 1, 4000)
    pin = libc.malloc(4000)
    for b in blocks:
        libc.free(b)
    kept = rss_mb()
    from shared.memory import trim_heap
    assert trim_heap()
    print(kept, rss_mb())
    """
)


def test_trim_returns_the_memory_free_kept() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROGRAM], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    kept, trimmed = (float(x) for x in out.split())
    assert kept - trimmed > 150, (kept, trimmed)  # ~190 MB were freed but kept


async def test_the_trimmer_trims_on_its_interval_until_shutdown() -> None:
    calls: list[float] = []
    loop = asyncio.get_running_loop()

    def trim() -> bool:
        calls.append(loop.time())
        return True

    trimmer = HeapTrimmer(0.02, trim=trim)
    task = asyncio.create_task(trimmer.run())
    await asyncio.sleep(0.15)
    trimmer.signal_shutdown()
    await asyncio.wait_for(task, timeout=1)
    assert 3 <= len(calls) <= 8
    assert all(b - a >= 0.015 for a, b in zip(calls, calls[1:], strict=False))


async def test_a_zero_interval_never_trims_and_a_missing_malloc_trim_stops_it() -> None:
    calls: list[int] = []

    def trim() -> bool:
        calls.append(1)
        return True

    await asyncio.wait_for(HeapTrimmer(0, trim=trim).run(), 1)
    assert calls == []

    def unavailable() -> bool:
        calls.append(1)
        return False

    await asyncio.wait_for(HeapTrimmer(0.01, trim=unavailable).run(), 1)
    assert calls == [1]


async def test_every_service_app_runs_a_trimmer_beside_its_lifespan() -> None:
    from contextlib import asynccontextmanager
    from types import SimpleNamespace

    from fastapi import FastAPI

    from shared.http.app import create_service_app

    def trimmers() -> set[asyncio.Task[object]]:
        return {t for t in asyncio.all_tasks() if t.get_name() == "heap-trimmer"}

    others = trimmers()  # other tests' apps may run in this event loop too
    seen: list[set[asyncio.Task[object]]] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        seen.append(trimmers() - others)
        yield

    app = create_service_app(title="t", description="t", version="1", lifespan=lifespan)
    app.state.settings = SimpleNamespace(memory_trim_interval_s=0.01)
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0.05)
    [ours] = seen[0]
    assert ours.done() and not ours.cancelled()  # stopped by the lifespan's end
