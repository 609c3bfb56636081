"""The clock every service injects: a callable returning an aware UTC datetime.

Decisions take ``now`` as an argument; runtimes take a ``Clock`` so that tests can
advance a fake one by days instead of waiting (``tests/support/clock.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
