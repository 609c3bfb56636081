"""``tenure bench segmenter --quick`` runs end to end and reports every figure.

A smoke test: sizes are small and no timing is judged (a quick run exits 0 even
when it misses a target). It uses the session's PostgreSQL for its scratch
databases and starts a broker of its own, as the command does.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from tenure.bench.segmenter import SegmenterBenchOptions, run_segmenter_bench

pytestmark = pytest.mark.slow

EXPECTED = {
    "COPY events (baseline)": "rows/s",
    "consumer (20 segments)": "events/s",
    "soak consumed": "events/s",
    "RSS at soak start": "MB",
    "RSS at soak end": "MB",
    "RSS max": "MB",
    "RSS slope, whole soak": "MB/min",
    "RSS slope, 2nd half": "MB/min",
    "COPY 50,000 profiles (baseline)": "s",
    "backfill 5 segments": "s",
    "sweep 50,000 (chunk 50,000)": "s",
    "sweep 50,000 (chunk 50,000, 2 sweepers)": "s",
}
#: figures judged against a target in a full run
TARGETED = {
    "consumer (20 segments)",
    "soak consumed",
    "RSS slope, 2nd half",
    "sweep 50,000 (chunk 50,000, 2 sweepers)",
}


async def test_quick_run_reports_every_figure(
    postgres_admin_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = replace(
        SegmenterBenchOptions.for_run(duration_s=1, quick=True),
        database_url=postgres_admin_url,
        bootstrap_servers=None,
        soak_s=3.0,
        log=lambda line: None,
    )
    report = tmp_path / "bench.json"

    status = await run_segmenter_bench(duration_s=1, quick=True, json_path=report, options=options)

    assert status == 0
    figures = {f["scenario"]: f for f in orjson.loads(report.read_bytes())["figures"]}
    assert set(figures) == set(EXPECTED)
    for scenario, unit in EXPECTED.items():
        figure = figures[scenario]
        assert figure["unit"] == unit
        assert math.isfinite(figure["value"])
        if unit != "MB/min":  # a slope may be negative
            assert figure["value"] > 0, scenario
    for scenario in TARGETED:
        assert figures[scenario]["verdict"] in ("PASS", "MISS")
    # one loop shows the cost per loop; the sweep is judged as the service runs it
    assert figures["sweep 50,000 (chunk 50,000)"]["verdict"] is None
    assert figures["consumer (20 segments)"]["ratio"] > 0
    assert figures["sweep 50,000 (chunk 50,000)"]["ratio"] > 0
    assert figures["soak consumed"]["ratio"] > 0
    printed = capsys.readouterr().out
    for scenario in EXPECTED:
        assert scenario in printed
