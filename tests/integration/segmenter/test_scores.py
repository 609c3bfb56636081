"""Churn risk and LTV through the service: refit on demand, say the method, use in rules."""

from __future__ import annotations

from datetime import timedelta

from services.segmenter.scoring import summarise_customer
from services.segmenter.scoring_job import REFIT_LOCK, purchase_summaries, scoring_time
from shared.db.locks import release_session_lock, take_session_lock
from tests.integration.segmenter.conftest import ADMIN, Stack
from tests.integration.segmenter.events import event, run_id
from tests.integration.segmenter.test_segments import create, eventually_members, tagged


async def test_refit_scores_every_customer_and_feeds_segments(stack: Stack) -> None:
    run = run_id()
    now = stack.clock.now
    loyal, lapsed, browser = f"loyal-{run}", f"lapsed-{run}", f"browser-{run}"
    await stack.send(
        *[
            event("identify", c, now - timedelta(days=400), traits={"run": run})
            for c in (loyal, lapsed, browser)
        ],
        *[
            event(
                "track",
                loyal,
                now - timedelta(days=d),
                event="Order Completed",
                properties={"revenue": 30},
            )
            for d in (300, 200, 100, 10, 2)
        ],
        event(
            "track",
            lapsed,
            now - timedelta(days=390),
            event="Order Completed",
            properties={"revenue": 80},
        ),
        event("track", browser, now - timedelta(days=1), event="Product Viewed"),
    )
    for customer in (loyal, lapsed, browser):
        await stack.profile(customer, until=lambda p: len(p["events"]) >= 1)
    at_risk = f"at-risk-{run}"
    await create(
        stack,
        at_risk,
        tagged(run, {"kind": "score", "score": "churn_risk", "op": "gte", "value": 0.9}),
    )
    assert (await stack.client.get(f"/v1/segments/{at_risk}", headers=ADMIN)).json()["members"] == 0

    fit = await stack.client.post("/v1/scores/refit", headers=ADMIN)
    assert fit.status_code == 200, fit.text
    report = fit.json()
    # a handful of customers is too little history to learn churn from: the recency
    # heuristic, and the report says so; too few buyers for the LTV models too
    assert report["method"] == "recency_heuristic"
    assert "too little history" in report["reason"]
    assert report["churn"]["definition"] == "no 'Order Completed' within 90 days"
    assert report["churn"]["candidates"] == []
    assert report["ltv_method"] == "inactivity_fallback"

    scores = {c: (await stack.profile(c))["scores"] for c in (loyal, lapsed, browser)}
    for customer, score in scores.items():
        assert 0.0 <= score["churn_risk"] <= 1.0, customer
        assert score["method"] == "recency_heuristic"
        assert score["explanation"]["churn_definition"] == report["churn"]["definition"]
    assert scores[loyal]["churn_risk"] < 0.1 < 0.9 < scores[lapsed]["churn_risk"]
    assert scores[loyal]["rfm_tier"] is not None
    assert scores[browser]["rfm_tier"] is None  # never bought: no RFM
    # never bought in 400 days: very likely not to buy in the next 90 either
    assert scores[browser]["churn_risk"] > 0.9

    await eventually_members(stack, at_risk, {lapsed, browser})
    latest = await stack.client.get("/v1/scores/fit", headers=ADMIN)
    assert latest.status_code == 200, latest.text
    assert (latest.json()["method"], latest.json()["churn"]) == (report["method"], report["churn"])
    change = (await stack.changes_of(lapsed, 1))[0]
    assert (change["segmentId"], change["cause"]) == (at_risk, "score")


async def test_one_refit_at_a_time_across_segmenter_processes(stack: Stack) -> None:
    """Every replica and worker process runs a refit loop: the lock lets one refit, the
    others' schedule skips a fit that just happened, and the API answers 409 meanwhile."""
    runtime = stack.runtime
    async with runtime.engine.connect() as other_process:
        assert await take_session_lock(other_process, REFIT_LOCK)
        busy = await stack.client.post("/v1/scores/refit", headers=ADMIN)
        assert busy.status_code == 409, busy.text
        assert "another segmenter process" in busy.json()["detail"]
        assert await runtime.scheduled_refit() is None
        await release_session_lock(other_process, REFIT_LOCK)

    done = await stack.client.post("/v1/scores/refit", headers=ADMIN)
    assert done.status_code == 200, done.text
    group = runtime.settings.segmenter
    interval, group.refit_interval_s = group.refit_interval_s, 3600.0
    try:
        assert await runtime.scheduled_refit() is None  # the fit above is 0 s old
        stack.clock.advance(minutes=31)
        report = await runtime.scheduled_refit()
        assert report is not None
        assert report.fitted_at == stack.clock.now
    finally:
        group.refit_interval_s = interval


async def test_the_refit_summarises_purchases_by_day_as_the_models_expect(stack: Stack) -> None:
    """Purchases on one UTC day are one occasion; monetary is the mean of the repeat
    occasions, the first excluded: the summary the model library builds from raw
    purchases (:func:`summarise_customer`), here built from the stored rollups."""
    buyer = f"buyer-{run_id()}"
    now = stack.clock.now
    day = now.replace(hour=9, minute=0, second=0, microsecond=0)
    purchases = [
        (day - timedelta(days=30), 20.0),
        (day - timedelta(days=30) + timedelta(hours=5), 5.0),  # same day: one occasion
        (day - timedelta(days=10), 40.0),
        (day - timedelta(days=2), 60.0),
    ]
    await stack.send(
        *[
            event("track", buyer, at, event="Order Completed", properties={"revenue": value})
            for at, value in purchases
        ]
    )
    await stack.profile(
        buyer,
        until=lambda p: {e["event"]: e["count"] for e in p["events"]} == {"Order Completed": 4},
    )
    async with stack.runtime.engine.connect() as conn:
        found = await purchase_summaries(conn, purchase_event="Order Completed", now=now)
    ours = next(s for s in found if s.customer_id == buyer)

    expected = summarise_customer(buyer, purchases, now=now, last_seen=purchases[-1][0])
    assert expected is not None
    assert (ours.frequency, ours.monetary, ours.total_value) == (2.0, 50.0, 125.0)
    assert ours == expected


async def test_summaries_as_of_a_past_day_ignore_what_came_after(stack: Stack) -> None:
    """Backtesting (or an imported history scored as of its end): purchases and activity
    after ``as_of`` are ignored, so the LTV fit sees the history as it was then."""
    buyer = f"past-{run_id()}"
    now = stack.clock.now
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    purchases = [(midnight - timedelta(days=d), 10.0 * d) for d in (30, 20, 10, 2)]
    await stack.send(
        *[
            event("track", buyer, at, event="Order Completed", properties={"revenue": value})
            for at, value in purchases
        ]
    )
    await stack.profile(
        buyer,
        until=lambda p: {e["event"]: e["count"] for e in p["events"]} == {"Order Completed": 4},
    )
    at = scoring_time(now, (midnight - timedelta(days=6)).date())
    async with stack.runtime.engine.connect() as conn:
        found = await purchase_summaries(conn, purchase_event="Order Completed", now=at)
    ours = next(s for s in found if s.customer_id == buyer)
    expected = summarise_customer(buyer, purchases, now=at)
    assert expected is not None
    assert (ours.frequency, ours.total_value) == (2.0, 600.0)  # the day -2 purchase is not seen
    assert ours == expected


async def test_as_of_must_not_be_in_the_future_and_unknown_fits_are_404(stack: Stack) -> None:
    tomorrow = (stack.clock.now + timedelta(days=1)).date().isoformat()
    future = await stack.client.post(f"/v1/scores/refit?as_of={tomorrow}", headers=ADMIN)
    assert future.status_code == 422, future.text
    assert future.json()["errors"][0]["loc"] == ["query", "as_of"]
    for bad_day in ("yesterday", "0001-01-01"):
        bad = await stack.client.post(f"/v1/scores/refit?as_of={bad_day}", headers=ADMIN)
        assert bad.status_code == 422, bad.text
    never = await stack.client.get("/v1/scores/fit?as_of=2001-01-01", headers=ADMIN)
    assert never.status_code == 404, never.text
    assert "2001-01-01" in never.json()["detail"]
