"""Objectives through the API, and the report page drawn by a real headless Chromium
from the vendored chart library (no network but loopback)."""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.events import customer_events, dispatch_outcomes, journey_runs
from shared.events.channels import Channel
from shared.events.dispatch_outcomes import DispatchOutcome, Status
from tests.integration.metrics.conftest import ADMIN, ADMIN_TOKEN, Stack
from tests.integration.metrics.test_customer_kpis import make_history
from tests.integration.metrics.test_messaging import T0, _run_events

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOT = ROOT / "docs" / "images" / "metrics-report.png"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=15000",
]


@pytest.fixture(scope="module")
async def populated(stack: Stack) -> None:
    """A year of customers, a split with a winner, a funnel."""
    history = make_history(datetime(2025, 12, 1, tzinfo=UTC), 360, 600, seed=4)
    await stack.send(customer_events.TOPIC, *history)
    rng = random.Random(8)
    runs = []
    for i in range(1_000):
        variant = "a" if i % 2 else "b"
        runs += _run_events(
            "welcome",
            f"rr-{i}",
            f"hist-{i % 600}",
            variant,
            rng.random() < (0.1 if variant == "a" else 0.2),
        )
    await stack.send(journey_runs.TOPIC, *runs)
    sends = [
        DispatchOutcome(
            outcome_id=f"o{i}",
            dispatch_id=f"d{i}",
            customer_id=f"hist-{i}",
            status=Status.SENT,
            channel=Channel.EMAIL,
            at=T0,
            journey_id="welcome",
            step_id="hello",
            variant="a" if i % 2 else "b",
        )
        for i in range(300)
    ]
    await stack.send(dispatch_outcomes.TOPIC, *sends)
    customers = len({e.customer_id for e in history})
    await stack.until("/v1/kpis/customers", lambda b: b["customers"] >= customers)
    for _ in range(100):
        await stack.client.post("/v1/experiments/evaluate", headers=ADMIN)
        found = await stack.get("/v1/experiments", journey_id="welcome")
        arms = [e for e in found if e["step_id"] == "split-subject"]
        if (
            arms
            and arms[0]["result"]
            and sum(a["exposed"] for a in arms[0]["result"]["arms"]) == 1_000
        ):
            break
        await asyncio.sleep(0.2)


async def test_objectives_lifecycle(stack: Stack, populated: None) -> None:
    body = {
        "id": "cut-churn",
        "name": "Cut monthly churn to 40 %",
        "metric": "churn_rate",
        "target": 0.4,
        "baseline": 0.7,
        "start": "2026-01-01",
        "deadline": "2026-12-31",
    }
    answer = await stack.client.post("/v1/objectives", json=body, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["id"] == "cut-churn"
    assert [p["period"] for p in created["series"]][:2] == ["2026-01-01", "2026-02-01"]
    assert created["current"] is not None, created["series"]
    assert created["progress"] == pytest.approx((created["current"] - 0.7) / (0.4 - 0.7))
    assert isinstance(created["on_track"], bool)
    taken = await stack.client.post("/v1/objectives", json=body, headers=ADMIN)
    assert taken.status_code == 409
    assert taken.headers["content-type"] == "application/problem+json"
    assert taken.json()["type"] == "urn:tenure:problem:conflict"
    assert taken.json()["detail"] == "objective 'cut-churn' already exists"
    bad = {**body, "id": "x", "deadline": "2025-01-01"}
    answer = await stack.client.post("/v1/objectives", json=bad, headers=ADMIN)
    assert answer.status_code == 422
    assert "deadline" in answer.text
    answer = await stack.client.post(
        "/v1/objectives", json={**body, "id": "y", "metric": "conversion_rate"}, headers=ADMIN
    )
    assert answer.status_code == 422 and "journey_id" in answer.text
    revenue = {
        **body,
        "id": "revenue",
        "name": "Grow revenue",
        "metric": "revenue",
        "target": 5000,
        "baseline": None,
    }
    answer = await stack.client.post("/v1/objectives", json=revenue, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    listed = await stack.get("/v1/objectives")
    assert [o["id"] for o in listed] == ["cut-churn", "revenue"]
    assert (await stack.client.delete("/v1/objectives/revenue", headers=ADMIN)).status_code == 204
    gone = await stack.client.get("/v1/objectives/revenue", headers=ADMIN)
    assert gone.status_code == 404
    assert gone.json()["detail"] == "no objective 'revenue'" and gone.json()["request_id"]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed: apt-get install chromium")
    return found


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


async def test_report_page_renders_in_chromium(stack: Stack, served: int, tmp_path: Path) -> None:
    browser = _chromium()
    assert (await stack.client.get("/report")).status_code == 200
    assert (await stack.client.get("/static/chart.umd.min.js")).status_code == 200
    assert (await stack.client.get("/static/../app.py")).status_code == 404
    url = f"http://127.0.0.1:{served}/report#token={ADMIN_TOKEN}"
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = await asyncio.to_thread(_run, [browser, *FLAGS, *profile, "--dump-dom", url])
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'data-rendered="true"' in html, html[:3000]
    # every script came from the service itself
    assert re.findall(r'<script src="([^"]+)"', html) == [
        "/static/chart.umd.min.js",
        "/static/report.js",
    ]
    # cohort heatmap cells, experiment verdicts and objectives were drawn
    assert html.count('class="heat"') > 10
    assert "winner: b" in html
    assert "Cut monthly churn" in html
    shot = tmp_path / "report.png"
    result = await asyncio.to_thread(
        _run,
        [browser, *FLAGS, *profile, f"--screenshot={shot}", "--window-size=1400,2300", url],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000  # charts, not a blank page
    if os.environ.get("TENURE_UPDATE_SCREENSHOTS"):
        SCREENSHOT.write_bytes(shot.read_bytes())


XSS = '<img src=x onerror="document.body.dataset.pwned=1">'


async def test_a_hostile_objective_name_is_shown_as_text(
    stack: Stack, populated: None, served: int, tmp_path: Path
) -> None:
    """Issue 21 #9: an objective's name was inserted with innerHTML (stored XSS), and the
    admin token was kept in localStorage."""
    browser = _chromium()
    body = {
        "id": "xss",
        "name": XSS,
        "metric": "revenue",
        "target": 5000,
        "start": "2026-01-01",
        "deadline": "2026-12-31",
    }
    answer = await stack.client.post("/v1/objectives", json=body, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    try:
        page = (await stack.client.get("/report")).text
        assert "Content-Security-Policy" in page and "script-src 'self'" in page
        profile = tmp_path / "profile"
        url = f"http://127.0.0.1:{served}/report?journey=welcome#token={ADMIN_TOKEN}"
        dom = await asyncio.to_thread(
            _run, [browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url]
        )
        assert dom.returncode == 0, dom.stderr[-2000:]
        html = dom.stdout
        assert 'data-rendered="true"' in html, html[:3000]
        assert "pwned" not in html.split("<body", 1)[1].split(">", 1)[0]  # onerror never ran
        assert "<img" not in html
        # the name, as characters, in the objectives table
        assert "&lt;img src=x onerror=" in html
        # the journey filter (client-side) applied
        assert "journey welcome" in html
        # the token is not written to localStorage on disk
        for stored in profile.rglob("*"):
            if "Local Storage" in str(stored) and stored.is_file():
                assert ADMIN_TOKEN.encode() not in stored.read_bytes(), stored
    finally:
        await stack.client.delete("/v1/objectives/xss", headers=ADMIN)


async def test_report_data_needs_a_token(stack: Stack) -> None:
    assert (await stack.client.get("/v1/report")).status_code == 401


async def test_a_refused_objective_echoing_a_huge_integer_is_a_422(stack: Stack) -> None:
    """Schemathesis found the 422's echo of an integer over 64 bits (in a key the model
    ignores) failing the answer with a 500."""
    body = {
        "name": "x",
        "metric": "revenue",
        "target": 1.0,
        "start": "2025-06-01",
        "deadline": "2025-01-01",  # before start: refused
        "extra": [-831621854734869498935256285184],
    }
    answer = await stack.client.post("/v1/objectives", json=body, headers=ADMIN)
    assert answer.status_code == 422, answer.text
    assert "deadline must be after start" in answer.json()["errors"][0]["msg"]


async def test_an_objective_over_millennia_is_refused(stack: Stack) -> None:
    """Schemathesis's objectives from year 1 to 9999 made every later read of the
    objectives (and the report) measure thousands of years, past the client's timeout;
    one starting in year 1 failed measuring the period before it."""
    body = {"name": "x", "metric": "revenue", "target": 1.0, "period": "week"}
    spans = [("0001-01-01", "0001-06-01", "start"), ("2000-01-01", "9999-01-01", "deadline")]
    for start, deadline, field in spans:
        answer = await stack.client.post(
            "/v1/objectives", json={**body, "start": start, "deadline": deadline}, headers=ADMIN
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["loc"] == ["body", field]


async def test_a_nul_character_in_a_body_is_a_422_not_a_500(stack: Stack) -> None:
    """Schemathesis found a NUL (which PostgreSQL cannot store) in an experiment's
    control failing in asyncpg with a 500; an objective stores its strings too."""
    answer = await stack.client.patch(
        "/v1/experiments/j/1/s", json={"control": "z\x00"}, headers=ADMIN
    )
    assert answer.status_code == 422, answer.text
    assert "`control` contains a NUL character" in answer.json()["errors"][0]["msg"]
    objective = {
        "name": "N\x00",
        "metric": "revenue",
        "target": 1.0,
        "start": "2025-01-01",
        "deadline": "2025-06-01",
    }
    answer = await stack.client.post("/v1/objectives", json=objective, headers=ADMIN)
    assert answer.status_code == 422, answer.text
    assert "`name` contains a NUL character" in answer.json()["errors"][0]["msg"]


async def test_the_report_narrows_to_one_journey_on_the_server(
    stack: Stack, populated: None
) -> None:
    """Issue 22: ``journey_id`` filtered only in the page; an API user (or a big base)
    had every journey's funnel and tests in each answer."""
    whole = await stack.get("/v1/report")
    assert {r["journey_id"] for r in whole["funnel"]} >= {"welcome"}
    assert any(e["journey_id"] == "welcome" for e in whole["experiments"])
    one = await stack.get("/v1/report", journey_id="welcome")
    assert one["funnel"] and {r["journey_id"] for r in one["funnel"]} == {"welcome"}
    assert one["experiments"] and {e["journey_id"] for e in one["experiments"]} == {"welcome"}
    assert one["cohorts"] == whole["cohorts"]  # the base's figures stay whole
    other = await stack.get("/v1/report", journey_id="no-such-journey")
    assert other["funnel"] == [] and other["experiments"] == []


async def test_the_report_page_sends_its_policy_as_a_header(stack: Stack) -> None:
    for path in ("/report", "/static/report.js"):
        answer = await stack.client.get(path)
        assert answer.status_code == 200
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
