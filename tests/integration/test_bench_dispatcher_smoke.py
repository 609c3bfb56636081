"""``tenure bench dispatcher`` runs end to end on a few messages and reports every figure
(a smoke test: no timing is judged). It starts its own broker, PostgreSQL, dispatcher
and provider processes, as the command does."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tenure.bench.dispatcher import DispatcherBench

pytestmark = pytest.mark.slow


async def test_every_figure_is_measured(tmp_path: Path) -> None:
    figures = await DispatcherBench(count=200, state=tmp_path).run()
    assert [f.scenario for f in figures] == [
        "email throughput",
        "push throughput (FCM)",
        "email p99 at half rate",
    ]
    for figure in figures:
        assert math.isfinite(figure.value) and figure.value > 0, figure
        assert figure.passed in (True, False)
    assert figures[0].ratio is not None and figures[0].ratio > 0
    assert figures[1].ratio is not None and figures[1].ratio > 0
