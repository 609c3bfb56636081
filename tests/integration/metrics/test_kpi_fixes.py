"""Regression tests for the KPI fixes of issue 23 (item 5): cohorts never show 0
customers whatever the import order, every period series is zero-filled alike, and a
conversion on the day of entering counts as retention."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.events import customer_events, journey_runs
from shared.events.customer_events import CustomerEvent, EventType
from shared.events.journey_runs import JourneyRunEvent, RunEventKind
from tests.integration.metrics.conftest import Stack

HISTORY = datetime(2024, 1, 3, 10, 0, tzinfo=UTC)


def _track(message: str, customer: str, at: datetime, *, order: bool) -> CustomerEvent:
    return CustomerEvent(
        type=EventType.TRACK,
        message_id=message,
        user_id=customer,
        event="Order Completed" if order else "Product Viewed",
        timestamp=at,
        received_at=at,
        properties={"revenue": 20.0} if order else {},
    )


async def test_a_history_imported_newest_first_leaves_no_empty_cohort(stack: Stack) -> None:
    """Each customer is seen first in a late month, then earlier and earlier: the
    cohorts they left must not stay behind with 0 customers."""
    months = [HISTORY + timedelta(days=30 * k) for k in range(5)]
    customers = [f"nf-{i}" for i in range(6)]
    window = {"from": "2024-01-01", "to": "2024-06-30"}
    for k, at in reversed(list(enumerate(months))):
        events = [
            _track(f"nf-{c}-{k}", c, at + timedelta(hours=i), order=k % 2 == 0)
            for i, c in enumerate(customers)
        ]
        await stack.send(customer_events.TOPIC, *events)

        def landed(body: dict[str, Any], month: str = at.date().replace(day=1).isoformat()) -> bool:
            return any(p["period"] == month and p["active"] > 0 for p in body["periods"])

        # one batch after the other, so that each moves the customers' first day earlier
        await stack.until("/v1/kpis/revenue", landed, period="month", **window)
    for period in ("month", "week"):
        body = await stack.get("/v1/kpis/cohorts", period=period, **window)
        assert body["cohorts"], body
        assert [c["customers"] for c in body["cohorts"]] == [len(customers)], body
    report = await stack.get("/v1/report", **window)
    assert all(c["customers"] > 0 for c in report["cohorts"]), report["cohorts"]
    assert [c["customers"] for c in report["cohorts"]] == [len(customers)]


async def test_revenue_is_zero_filled_like_activity(stack: Stack) -> None:
    """Orders in January and March only: February is a period of 0 orders, not absent,
    and its LTV to date carries January's."""
    start = datetime(2022, 1, 10, 9, tzinfo=UTC)
    events = [
        _track("zf-1", "zf-a", start, order=True),
        _track("zf-2", "zf-b", start + timedelta(days=60), order=True),
    ]
    await stack.send(customer_events.TOPIC, *events)
    window = {"from": "2022-01-01", "to": "2022-04-30"}
    body = await stack.until(
        "/v1/kpis/revenue",
        lambda b: sum(p["orders"] for p in b["periods"]) == 2,
        period="month",
        **window,
    )
    activity = await stack.get("/v1/kpis/activity", period="month", **window)
    months = ["2022-01-01", "2022-02-01", "2022-03-01", "2022-04-01"]
    assert [p["period"] for p in body["periods"]] == months
    assert [p["period"] for p in activity["periods"]] == months
    february, april = body["periods"][1], body["periods"][3]
    assert (february["orders"], february["revenue"], february["new_customers"]) == (0, 0.0, 0)
    assert february["average_order_value"] is None
    assert february["ltv_to_date"] == body["periods"][0]["ltv_to_date"] == 20.0
    assert april["ltv_to_date"] == body["periods"][2]["ltv_to_date"] == 20.0
    for kind in ("day", "week"):
        revenue = await stack.get("/v1/kpis/revenue", period=kind, **window)
        activity = await stack.get("/v1/kpis/activity", period=kind, **window)
        assert [p["period"] for p in revenue["periods"]] == [
            p["period"] for p in activity["periods"]
        ]
    day = await stack.get("/v1/kpis/revenue", period="day", **window)
    assert len(day["periods"]) == (date(2022, 4, 30) - date(2022, 1, 1)).days + 1


def _run(journey: str, run: str, customer: str, at: datetime, *, holdout: bool) -> JourneyRunEvent:
    return JourneyRunEvent(
        event_id=f"{run}:0",
        kind=RunEventKind.HELD_OUT if holdout else RunEventKind.ENTERED,
        seq=0,
        at=at,
        holdout=holdout,
        run_id=run,
        customer_id=customer,
        journey_id=journey,
        journey_version=1,
        entered_at=at,
    )


def _converted(
    journey: str, run: str, customer: str, entered: datetime, at: datetime, *, holdout: bool
) -> JourneyRunEvent:
    return JourneyRunEvent(
        event_id=f"{run}:1",
        kind=RunEventKind.CONVERTED,
        seq=1,
        at=at,
        holdout=holdout,
        goal_event="Order Completed",
        run_id=run,
        customer_id=customer,
        journey_id=journey,
        journey_version=1,
        entered_at=entered,
    )


async def test_a_conversion_on_the_day_of_entering_counts_as_retained(stack: Stack) -> None:
    journey = "same-day-j"
    entered = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
    bought = entered + timedelta(hours=2)  # the same day
    runs, conversions, orders = [], [], []
    for i in range(6):
        holdout = i >= 4
        customer, run = f"sd-{i}", f"sd-run-{i}"
        runs.append(_run(journey, run, customer, entered, holdout=holdout))
        if i in (0, 1, 4):  # two entrants and one held-out customer buy that day
            conversions.append(_converted(journey, run, customer, entered, bought, holdout=holdout))
            orders.append(_track(f"sd-order-{i}", customer, bought, order=True))
    await stack.send(journey_runs.TOPIC, *runs, *conversions)
    await stack.send(customer_events.TOPIC, *orders)
    body = await stack.until(
        f"/v1/kpis/uplift/{journey}",
        lambda b: (
            b["conversion"]["entrants"]["converted"] + b["conversion"]["holdout"]["converted"] == 3
        ),
        retention_days=30,
    )
    retention = body["retention"]
    assert (retention["entrants"]["exposed"], retention["entrants"]["converted"]) == (4, 2)
    assert (retention["holdout"]["exposed"], retention["holdout"]["converted"]) == (2, 1)
    assert retention["uplift"] == 2 / 4 - 1 / 2
