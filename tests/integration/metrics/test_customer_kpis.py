"""Customer KPIs from a generated history, against answers computed here in plain
Python; every message is delivered twice, in shuffled event-time order."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from shared.events.customer_events import TOPIC, CustomerEvent, EventType
from tests.integration.metrics.conftest import Stack

START = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 200


def _month(day: date) -> date:
    return day.replace(day=1)


def _week(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def make_history(
    start: datetime = START, days: int = DAYS, customers: int = 250, seed: int = 15
) -> list[CustomerEvent]:
    """Customers arriving over ``days``, coming back at random, some buying."""
    rng = random.Random(seed)
    events = []
    for c in range(customers):
        customer = f"hist-{c}"
        first = rng.randrange(days - 10)
        for n in range(rng.randint(1, 12)):
            day = min(days - 1, first + int(rng.expovariate(1 / 25)) * (n > 0))
            at = start + timedelta(days=day, seconds=rng.randrange(86_400))
            order = rng.random() < 0.3
            events.append(
                CustomerEvent(
                    type=EventType.TRACK,
                    message_id=f"{customer}-{n}",
                    user_id=customer,
                    timestamp=at,
                    received_at=at,
                    event="Order Completed" if order else "Product Viewed",
                    properties={"revenue": round(rng.uniform(5, 200), 2)} if order else {},
                )
            )
        # the dispatcher's engagement events and identify calls are not activity
        events.append(
            CustomerEvent(
                type=EventType.IDENTIFY,
                message_id=f"{customer}-identify",
                user_id=customer,
                timestamp=start + timedelta(days=days + 5),
                received_at=start,
                traits={"plan": "pro"},
            )
        )
    rng.shuffle(events)
    return events


@pytest.fixture(scope="module")
def history() -> list[CustomerEvent]:
    return make_history()


def _expected(events: list[CustomerEvent]) -> dict[str, Any]:
    months: dict[date, set[str]] = defaultdict(set)
    weeks: dict[date, set[str]] = defaultdict(set)
    first: dict[str, date] = {}
    revenue: dict[date, float] = defaultdict(float)
    orders: dict[date, int] = defaultdict(int)
    per_customer_orders: dict[str, int] = defaultdict(int)
    per_customer_revenue: dict[str, float] = defaultdict(float)
    for e in events:
        if e.type is not EventType.TRACK:
            continue
        day = e.timestamp.date()
        months[_month(day)].add(e.customer_id)
        weeks[_week(day)].add(e.customer_id)
        first[e.customer_id] = min(first.get(e.customer_id, day), day)
        if e.event == "Order Completed":
            value = float(e.properties["revenue"])  # type: ignore[arg-type]
            revenue[_month(day)] += value
            orders[_month(day)] += 1
            per_customer_orders[e.customer_id] += 1
            per_customer_revenue[e.customer_id] += value
    return {
        "months": months,
        "weeks": weeks,
        "first": first,
        "revenue": revenue,
        "orders": orders,
        "orders_by_customer": per_customer_orders,
        "revenue_by_customer": per_customer_revenue,
    }


@pytest.fixture(scope="module")
async def loaded(stack: Stack, history: list[CustomerEvent]) -> dict[str, Any]:
    half = len(history) // 2
    await stack.send(TOPIC, *history[:half])
    await stack.send(TOPIC, *history)  # the first half again: redelivered
    await stack.send(TOPIC, *history[half:])
    expected = _expected(history)
    customers = len(expected["first"])
    await stack.until(
        "/v1/kpis/customers",
        lambda body: (
            body["customers"] >= customers and body["orders"] >= sum(expected["orders"].values())
        ),
    )
    return expected


async def test_monthly_activity_retention_and_churn(stack: Stack, loaded: dict[str, Any]) -> None:
    body = await stack.get(
        "/v1/kpis/activity", period="month", **{"from": "2025-01-01", "to": "2025-07-31"}
    )
    months = loaded["months"]
    assert len(body["periods"]) == 7
    for row in body["periods"]:
        month = date.fromisoformat(row["period"])
        previous = months.get(
            date(month.year, month.month - 1, 1)
            if month.month > 1
            else date(month.year - 1, 12, 1),
            set(),
        )
        current = months.get(month, set())
        assert row["active"] == len(current), row
        assert row["previous_active"] == len(previous)
        assert row["retained"] == len(current & previous), row
        assert row["churned"] == len(previous - current)
        if previous:
            assert row["churn_rate"] == pytest.approx(len(previous - current) / len(previous))
        else:
            assert row["churn_rate"] is None
        assert row["new"] == sum(1 for d in loaded["first"].values() if _month(d) == month)


async def test_weekly_retention(stack: Stack, loaded: dict[str, Any]) -> None:
    body = await stack.get(
        "/v1/kpis/activity", period="week", **{"from": "2025-01-06", "to": "2025-07-01"}
    )
    weeks = loaded["weeks"]
    for row in body["periods"]:
        week = date.fromisoformat(row["period"])
        current, previous = weeks.get(week, set()), weeks.get(week - timedelta(days=7), set())
        assert (row["active"], row["retained"]) == (len(current), len(current & previous)), row


async def test_cohort_retention(stack: Stack, loaded: dict[str, Any]) -> None:
    body = await stack.get(
        "/v1/kpis/cohorts", period="month", periods=12, **{"from": "2025-01-01", "to": "2025-07-31"}
    )
    cohorts: dict[date, set[str]] = defaultdict(set)
    for customer, day in loaded["first"].items():
        cohorts[_month(day)].add(customer)
    assert [date.fromisoformat(c["cohort"]) for c in body["cohorts"]] == sorted(cohorts)
    for row in body["cohorts"]:
        cohort = date.fromisoformat(row["cohort"])
        members = cohorts[cohort]
        assert row["customers"] == len(members)
        month = cohort
        for k in range(12):
            if month > date(2025, 7, 1):  # after the range asked for: not yet known
                assert row["active"][k] is None and row["retention"][k] is None
                month = _next_month(month)
                continue
            active = len(members & loaded["months"].get(month, set()))
            assert row["active"][k] == active, (cohort, k)
            assert row["retention"][k] == pytest.approx(active / len(members))
            month = _next_month(month)
        assert row["retention"][0] == 1.0


async def test_revenue_orders_aov_and_ltv(stack: Stack, loaded: dict[str, Any]) -> None:
    body = await stack.get(
        "/v1/kpis/revenue", period="month", **{"from": "2025-01-01", "to": "2025-07-31"}
    )
    customers_to_date = 0
    revenue_to_date = 0.0
    for row in body["periods"]:
        month = date.fromisoformat(row["period"])
        assert row["orders"] == loaded["orders"].get(month, 0)
        assert row["revenue"] == pytest.approx(loaded["revenue"].get(month, 0.0))
        if row["orders"]:
            assert row["average_order_value"] == pytest.approx(row["revenue"] / row["orders"])
        customers_to_date += sum(1 for d in loaded["first"].values() if _month(d) == month)
        revenue_to_date += loaded["revenue"].get(month, 0.0)
        assert row["new_customers"] == sum(
            1 for d in loaded["first"].values() if _month(d) == month
        )
        if customers_to_date:
            assert row["ltv_to_date"] == pytest.approx(revenue_to_date / customers_to_date)


async def test_repeat_purchase_rate_and_cohort_ltv(stack: Stack, loaded: dict[str, Any]) -> None:
    body = await stack.get(
        "/v1/kpis/customers", cohort="month", **{"from": "2025-01-01", "to": "2025-12-31"}
    )
    orders = loaded["orders_by_customer"]
    buyers = [c for c, n in orders.items() if n >= 1]
    repeaters = [c for c, n in orders.items() if n >= 2]
    cohorts = body["cohorts"]
    assert sum(c["customers"] for c in cohorts) == len(loaded["first"])
    assert sum(c["buyers"] for c in cohorts) == len(buyers)
    total_revenue = sum(loaded["revenue_by_customer"].values())
    assert sum(c["revenue"] for c in cohorts) == pytest.approx(total_revenue)
    for row in cohorts:
        cohort = date.fromisoformat(row["cohort"])
        members = [c for c, d in loaded["first"].items() if _month(d) == cohort]
        assert row["customers"] == len(members)
        assert row["ltv"] == pytest.approx(
            sum(loaded["revenue_by_customer"].get(c, 0.0) for c in members) / len(members)
        )
    if body["customers"] == len(loaded["first"]):  # this module's customers only
        assert body["repeat_purchase_rate"] == pytest.approx(len(repeaters) / len(buyers))


async def test_bad_ranges_are_422(stack: Stack) -> None:
    from tests.integration.metrics.conftest import ADMIN

    answer = await stack.client.get(
        "/v1/kpis/activity?from=2025-05-01&to=2025-01-01", headers=ADMIN
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert "after" in problem["detail"] and problem["errors"][0]["loc"] == ["query", "from"]
    answer = await stack.client.get("/v1/kpis/activity?period=year", headers=ADMIN)
    assert answer.status_code == 422
    answer = await stack.client.get("/v1/kpis/activity")
    assert answer.status_code == 401


async def test_a_range_too_long_is_a_documented_422(stack: Stack) -> None:
    """Schemathesis found a 422 the document did not describe; every 422 is now a
    problem: ``detail`` a sentence, the located errors in ``errors``."""
    from tests.integration.metrics.conftest import ADMIN

    answer = await stack.client.get(
        "/v1/kpis/activity?from=1980-06-09&to=2092-08-26&period=month", headers=ADMIN
    )
    assert answer.status_code == 422
    [error] = answer.json()["errors"]
    assert error["loc"] == ["query", "to"] and "at most 3700 days" in error["msg"]
    assert "at most 3700 days" in answer.json()["detail"]
    answer = await stack.client.get("/v1/kpis/funnel?group_by=day,colour", headers=ADMIN)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["loc"] == ["query", "group_by"]


async def test_a_journey_version_out_of_range_is_a_422_not_a_500(stack: Stack) -> None:
    """Schemathesis found a version over int4 failing in asyncpg with a 500."""
    from tests.integration.metrics.conftest import ADMIN

    for version in (18629141748756, 0):
        answer = await stack.client.get(f"/v1/experiments/j/{version}/s", headers=ADMIN)
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["loc"] == ["path", "journey_version"]
        patch = await stack.client.patch(
            f"/v1/experiments/j/{version}/s", json={"control": "a"}, headers=ADMIN
        )
        assert patch.status_code == 422, patch.text
