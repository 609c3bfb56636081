"""The alert rules and dashboard queries against a real Prometheus (Debian's
``prometheus`` package) scraping the metrics service over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tenure.embedded import free_port
from tests.integration.metrics.conftest import Stack

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"


def _binary(name: str) -> str:
    """The binary's path; in CI a missing binary fails the test instead of skipping it."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (.ci/run installs Debian's prometheus)")
        pytest.skip(f"{name} is not installed: apt-get install prometheus")
    return found


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run(
        [_binary("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_committed_dashboards_are_generated() -> None:
    sys.path.insert(0, str(ROOT / "deploy" / "grafana"))
    try:
        import generate
    finally:
        sys.path.pop(0)
    for name in generate.DASHBOARDS:
        assert (DASHBOARDS / name).read_text() == generate.render(name), (
            f"{name} is stale: run python deploy/grafana/generate.py"
        )


def _dashboard_queries() -> list[tuple[str, str]]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{path.name}: {panel['title']}", target["expr"]))
    return found


def _grafana_to_promql(expr: str) -> str:
    expr = expr.replace("$__rate_interval", "1m").replace("$__range", "5m")
    return re.sub(r"\$[a-z_]+", ".*", expr)


@pytest.fixture(scope="module")
def prometheus(served: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = _binary("prometheus")
    folder = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "metrics", "static_configs": [{"targets": [f"127.0.0.1:{served}"]}]}
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


async def _query(client: httpx.AsyncClient, base: str, expr: str) -> dict[str, Any]:
    answer = await client.get(f"{base}/api/v1/query", params={"query": expr})
    body: dict[str, Any] = answer.json()
    return body


async def _wait_for_scrape(client: httpx.AsyncClient, base: str) -> None:
    for _ in range(150):
        with contextlib.suppress(httpx.TransportError):
            body = await _query(client, base, 'up{job="metrics"}')
            result = body.get("data", {}).get("result", [])
            if result and result[0]["value"][1] == "1":
                return
        await asyncio.sleep(0.2)
    raise AssertionError("Prometheus never scraped the metrics service")


async def test_prometheus_scrapes_the_service_and_every_query_evaluates(
    stack: Stack, prometheus: str
) -> None:
    # something to count, whatever ran before in this module
    await stack.client.post(
        "/v1/experiments/evaluate", headers={"Authorization": "Bearer test-admin-token"}
    )
    async with httpx.AsyncClient(timeout=10) as client:
        await _wait_for_scrape(client, prometheus)
        gauges = await _query(client, prometheus, "tenure_metrics_active_customers")
        assert {r["metric"]["period"] for r in gauges["data"]["result"]} == {"day", "week", "month"}
        rules = yaml.safe_load(RULES.read_text())
        exprs = [
            (rule["alert"], rule["expr"]) for group in rules["groups"] for rule in group["rules"]
        ]
        exprs += [(title, _grafana_to_promql(e)) for title, e in _dashboard_queries()]
        assert len(exprs) > 40
        failures = []
        for title, expr in exprs:
            body = await _query(client, prometheus, expr)
            if body.get("status") != "success":
                failures.append(f"{title}: {body.get('error')}  [{expr}]")
        assert not failures, "\n".join(failures)
        # the rules were loaded and evaluated without error
        for _ in range(50):
            groups = (await client.get(f"{prometheus}/api/v1/rules")).json()["data"]["groups"]
            states = [r for g in groups for r in g["rules"]]
            if len(states) == 9 and all(
                r.get("lastEvaluation", "").startswith("20") for r in states
            ):
                break
            await asyncio.sleep(0.2)
        assert len(states) == 9
        assert all(r["health"] == "ok" for r in states), [
            (r["name"], r.get("lastError")) for r in states if r["health"] != "ok"
        ]
