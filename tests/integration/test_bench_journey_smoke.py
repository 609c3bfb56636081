"""``tenure bench journey`` runs its three scenarios end to end at tiny sizes (no timing
is judged), on the session's PostgreSQL and broker."""

from __future__ import annotations

import pytest

from tenure.bench.journey import JourneyBench, JourneyBenchOptions, format_table

pytestmark = pytest.mark.slow


async def test_every_scenario_reports_a_figure(
    postgres_admin_url: str, bootstrap_servers: str
) -> None:
    options = JourneyBenchOptions(
        events=2_000,
        customers=500,
        timers=1_500,
        latency_s=1.0,
        rate=200.0,
        database_url=postgres_admin_url,
        bootstrap_servers=bootstrap_servers,
        log=lambda line: None,
    )
    figures = await JourneyBench(options).run()
    assert [f.unit for f in figures] == ["events/s", "timers/s", "ms p99"]
    assert all(f.value > 0 and f.ratio is not None and f.ratio > 0 for f in figures)
    assert "consumer, 10 active journeys" in format_table(figures)
