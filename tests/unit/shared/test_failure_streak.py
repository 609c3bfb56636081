"""One failing loop logs a line per streak and interval, backs off, and says when it
recovered; only unexpected errors carry their traceback."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import OperationalError

from shared.retry import FailureStreak


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lost() -> OperationalError:
    return OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def test_a_streak_logs_its_first_failure_then_one_line_per_interval_then_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    streak = FailureStreak("the sweep", clock=clock, first_s=0.1, max_s=30, log_every_s=30)
    delays = []
    with caplog.at_level(logging.INFO):
        for _ in range(100):  # 100 failures over 50 s
            delays.append(streak.failed(lost()))
            clock.now += 0.5
        streak.succeeded()
        streak.succeeded()  # nothing to recover from any more
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "WARNING", "INFO"]
    assert "the sweep failed (OperationalError" in lines[0][1]
    assert "61 failures" in lines[1][1] and "60 since the last line" in lines[1][1]
    assert lines[2][1] == "the sweep recovered after 100 failures in 50s"
    assert all(r.exc_info is None for r in caplog.records)
    assert 0.1 <= delays[0] <= 0.2 and 0.2 <= delays[1] <= 0.3
    assert max(delays) <= 30.1 and delays[-1] >= 30


def test_an_unexpected_error_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    streak = FailureStreak("the job", clock=Clock())
    with caplog.at_level(logging.INFO):
        streak.failed(ValueError("a bug"))
    (record,) = caplog.records
    assert record.exc_info is not None and record.levelname == "ERROR"
