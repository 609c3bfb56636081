"""`tenure faults`, small: 20 customers, the dispatcher SIGKILLed midway; every customer
gets one email, metrics count them, nothing is left without a final outcome."""

from __future__ import annotations

import pytest

from tenure.faults import FaultOptions, FaultRun

pytestmark = pytest.mark.slow


def test_a_dispatcher_kill_midway_loses_and_duplicates_nothing() -> None:
    lines: list[str] = []
    result = FaultRun(
        "dispatcher", FaultOptions(customers=20, settle_timeout_s=240, log=lines.append)
    ).run()
    assert any("SIGKILL to the dispatcher" in line for line in lines)
    assert result.settled_s is not None, result.row()
    assert (result.emails, result.emailed, result.duplicates) == (20, 20, 0)
    assert result.metrics_sent == 20
    assert result.outcomes == {"sent": 20}
    assert result.unaccounted == 0
