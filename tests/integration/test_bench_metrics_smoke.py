"""``tenure bench metrics`` runs end to end at a tiny size and reports every figure
(a smoke test: no timing is judged)."""

from __future__ import annotations

import pytest

from tenure.bench.metrics import aggregation, kpi_queries

pytestmark = pytest.mark.slow


async def test_bench_metrics_reports_every_figure(postgres_admin_url: str) -> None:
    figures = await aggregation(postgres_admin_url, events=2_000, log=lambda _: None)
    figures += await kpi_queries(
        postgres_admin_url, customers=2_000, events_per_customer=3, log=lambda _: None
    )
    names = [f.scenario for f in figures]
    assert names[:2] == ["aggregation: copy (baseline)", "aggregation: handler"]
    assert "query: uplift (30-day retention)" in names
    assert len(names) == 14
    assert all(f.value > 0 for f in figures)
    assert all(f.met is not None for f in figures if f.target)
