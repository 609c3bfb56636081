"""A value derived from database rows, reloaded when a cheap stamp says they changed.

For rows every message reads and few requests write (the segmenter's segment
definitions, a journey service's journeys): each use asks :meth:`StampedCache.current`,
which at most every ``poll_s`` runs the ``stamp`` query (a count, a max of
``updated_at``…) and reloads only when the stamp differs. Other replicas' edits
show within ``poll_s``; this process's own edits call :meth:`invalidate`, so the
next use checks at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

T = TypeVar("T")
_UNSET = object()


class StampedCache(Generic[T]):
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        stamp: Callable[[AsyncConnection], Awaitable[Hashable]],
        load: Callable[[AsyncConnection], Awaitable[T]],
        initial: T,
        poll_s: float = 1.0,
    ) -> None:
        self._engine = engine
        self._stamp = stamp
        self._load = load
        self._value = initial
        self._loaded_stamp: object = _UNSET
        self._poll_s = poll_s
        self._checked_at = float("-inf")
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """The next :meth:`current` checks the stamp and reloads, whatever it says."""
        self._checked_at = float("-inf")
        self._loaded_stamp = _UNSET

    async def current(self) -> T:
        if time.monotonic() - self._checked_at < self._poll_s:
            return self._value
        async with self._lock:
            if time.monotonic() - self._checked_at < self._poll_s:
                return self._value
            async with self._engine.connect() as conn:
                stamp = await self._stamp(conn)
                if stamp != self._loaded_stamp:
                    self._value = await self._load(conn)
                    self._loaded_stamp = stamp
            self._checked_at = time.monotonic()
            return self._value
