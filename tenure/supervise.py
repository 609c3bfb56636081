"""When ``tenure dev`` restarts a service that died: backoff, and a limit.

Pure bookkeeping with an injected clock: :class:`RestartPolicy` says how long
to wait before the next restart, or None once a service died too often.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class RestartPolicy:
    """Exponential backoff from ``first_delay_s``; at most ``max_restarts`` per ``window_s``.

    A service that ran ``stable_after_s`` before dying starts again from the
    first delay: its earlier crashes are history.
    """

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_restarts: int = 5
    window_s: float = 300.0
    stable_after_s: float = 60.0
    _restarts: deque[float] = field(default_factory=deque)
    _delay_s: float = 0.0

    def next_delay(self, *, now: float, ran_for_s: float) -> float | None:
        """The wait before restarting a service that just died, or None: give up."""
        while self._restarts and now - self._restarts[0] > self.window_s:
            self._restarts.popleft()
        if len(self._restarts) >= self.max_restarts:
            return None
        if ran_for_s >= self.stable_after_s or not self._delay_s:
            self._delay_s = self.first_delay_s
        else:
            self._delay_s = min(self._delay_s * 2, self.max_delay_s)
        self._restarts.append(now)
        return self._delay_s

    @property
    def restarts_in_window(self) -> int:
        return len(self._restarts)
