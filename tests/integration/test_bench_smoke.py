"""``tenure bench ingest --quick`` runs end to end and reports every scenario.

A smoke test of the benchmark, not of performance: it asserts that every
scenario produced its figures and that ingest answered every request 2xx, never
how fast (timings on a shared test machine prove nothing).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

pytestmark = pytest.mark.slow

SCENARIOS = {
    ("bare track", 4),
    ("ingest track", 4),
    ("bare track", 64),
    ("ingest track", 64),
    ("bare batch x100", 64),
    ("raw send()+gather", None),
    ("ingest batch x100", 8),
    ("ingest batch x100", 64),
}


def test_quick_bench_reports_every_scenario(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TENURE_BENCH_", "TENURE_KAFKA_", "TENURE_HTTP_"))
    }
    env["TENURE_BENCH_JSON"] = str(report)
    done = subprocess.run(
        [sys.executable, "-m", "tenure", "bench", "ingest", "--quick"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    result = orjson.loads(report.read_bytes())
    assert result["quick"] is True
    rows: list[dict[str, Any]] = result["rows"]
    assert {(row["scenario"], row["connections"]) for row in rows} == SCENARIOS
    for row in rows:
        assert row["events_per_s"] > 0, row
        assert row["requests"] > 0, row
        assert row["p50_ms"] is not None and row["p99_ms"] is not None, row
        if row["connections"] is not None:  # an HTTP scenario
            assert row["requests_per_s"] > 0, row
    for row in rows:
        if row["kind"] == "ingest":
            assert row["non_2xx"] == 0, row
            assert row["errors"] == 0, row
            assert row["ratio"] is not None and row["ratio"] > 0, row
            assert row["verdict"] in ("PASS", "MISS"), row
    # the table is printed too, one line per scenario
    assert done.stdout.count("ingest batch x100") >= 2
