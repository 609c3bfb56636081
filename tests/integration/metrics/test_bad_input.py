"""Issue 21: a NaN objective broke `/v1/objectives` and `/v1/report` for good, and a
date range in year 9999 made a KPI query run for minutes. Both are 422s now."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.integration.metrics.conftest import ADMIN, Stack

OBJECTIVE = {
    "name": "keep them",
    "metric": "churn_rate",
    "period": "month",
    "target": 0.1,
    "start": "2026-01-01",
    "deadline": "2026-12-31",
}
KPI_ROUTES = [
    "/v1/kpis/activity",
    "/v1/kpis/cohorts",
    "/v1/kpis/revenue",
    "/v1/kpis/customers",
    "/v1/kpis/satisfaction",
    "/v1/kpis/funnel",
    "/v1/kpis/segments",
    "/v1/report",
]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"target": float("nan")}, "target"),
        ({"target": float("inf")}, "target"),
        ({"baseline": float("-inf")}, "baseline"),
        ({"name": "a\ud800"}, "name"),
        ({"description": "a\x00b"}, "description"),
        ({"start": "9999-01-01", "deadline": "9999-12-31"}, "start"),
        ({"start": "1900-01-01"}, "start"),
    ],
)
async def test_an_objective_that_cannot_be_measured_is_refused(
    stack: Stack, change: dict[str, object], field: str
) -> None:
    # json writes NaN, Infinity and a lone surrogate as an attacker sends them
    body = json.dumps({**OBJECTIVE, **change})
    answer = await stack.client.post(
        "/v1/objectives", content=body, headers={**ADMIN, "content-type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert any(field in str(e["loc"]) or field in e["msg"] for e in answer.json()["errors"])
    # and nothing was stored that breaks the reads
    assert (await stack.client.get("/v1/objectives", headers=ADMIN)).status_code == 200
    assert (await stack.client.get("/v1/report", headers=ADMIN)).status_code == 200


@pytest.mark.parametrize("path", KPI_ROUTES)
@pytest.mark.parametrize(
    "window",
    [
        {"from": "9999-12-31", "to": "9999-12-31"},
        {"from": "1969-12-31", "to": "2026-01-01"},
        {"from": "2026-02-01", "to": "2026-01-01"},
    ],
    ids=["year-9999", "before-1970", "from-after-to"],
)
async def test_a_date_range_out_of_bounds_is_a_422_at_once(
    stack: Stack, path: str, window: dict[str, str]
) -> None:
    answer = await asyncio.wait_for(stack.client.get(path, params=window, headers=ADMIN), 10)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["loc"][0] == "query"


@pytest.mark.parametrize("path", [p for p in KPI_ROUTES if p != "/v1/kpis/customers"])
async def test_a_range_longer_than_the_maximum_is_a_422(stack: Stack, path: str) -> None:
    answer = await stack.client.get(
        path, params={"from": "1970-01-01", "to": "2099-12-31"}, headers=ADMIN
    )
    assert answer.status_code == 422, answer.text
    assert "at most" in answer.json()["detail"]


async def test_the_widest_allowed_range_answers(stack: Stack) -> None:
    answer = await asyncio.wait_for(
        stack.client.get(
            "/v1/kpis/activity",
            params={"from": "2090-01-01", "to": "2099-12-31", "period": "day"},
            headers=ADMIN,
        ),
        20,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["periods"][-1]["period"] == "2099-12-31"
