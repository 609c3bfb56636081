"""Hand the heap memory a process freed back to the operating system (glibc only).

glibc's ``malloc`` keeps freed memory for reuse instead of returning it, so after
a burst (a consumer working through a backlog in batches of thousands of events)
a process holds far more than it uses, and its RSS creeps up in steps as
fragmentation moves the high-water mark. ``malloc_trim(0)`` returns every free
page of the heap. In ``tenure bench segmenter`` the first trim after the
consumer's backlog took the segmenter's replica from 315 MB to 169 MB, in 11 ms;
later trims, every 30 s, gave back 5–20 MB each (docs/performance.md).

Every service runs a :class:`HeapTrimmer` (``TENURE_MEMORY_TRIM_INTERVAL_S``).
Elsewhere (musl, macOS) there is nothing to call and it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
from collections.abc import Callable
from functools import cache

from shared.stopping import StoppableLoop

log = logging.getLogger(__name__)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def trim_heap() -> bool:
    """Return the heap's free pages to the OS; False where glibc's ``malloc_trim`` is
    not available."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class HeapTrimmer(StoppableLoop):
    """Calls ``trim`` every ``interval_s`` until :meth:`signal_shutdown` (0: never).

    A trim takes about a millisecond, up to ~10 ms after a large burst, on the
    event loop's thread.
    """

    def __init__(self, interval_s: float, *, trim: Callable[[], bool] = trim_heap) -> None:
        self._interval_s = interval_s
        self._trim = trim
        super().__init__()

    async def run(self) -> None:
        if self._interval_s <= 0:
            return
        while not await self._pause(self._interval_s):
            if not self._trim():
                log.debug("malloc_trim is not available here; heap trimming stops")
                return
