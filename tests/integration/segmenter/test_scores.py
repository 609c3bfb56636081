"""Churn risk and LTV through the service: refit on demand, say the method, use in rules."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from services.segmenter.scoring_job import REFIT_LOCK_KEY
from tests.integration.segmenter.conftest import ADMIN, Stack, event, run_id
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
    assert report["method"] == "inactivity_fallback"  # a handful of buyers is too few to fit
    assert "too few" in report["reason"] or "fewer" in report["reason"]

    scores = {c: (await stack.profile(c))["scores"] for c in (loyal, lapsed, browser)}
    for customer, score in scores.items():
        assert 0.0 <= score["churn_risk"] <= 1.0, customer
        assert score["method"] == "inactivity_fallback"
        assert score["explanation"]
    assert scores[loyal]["churn_risk"] < scores[lapsed]["churn_risk"]
    assert scores[loyal]["rfm_tier"] is not None
    assert scores[browser]["rfm_tier"] is None  # never bought: inactivity score alone

    await eventually_members(stack, at_risk, {lapsed})
    change = (await stack.changes_of(lapsed, 1))[0]
    assert (change["segmentId"], change["cause"]) == (at_risk, "score")


async def test_one_refit_at_a_time_across_segmenter_processes(stack: Stack) -> None:
    """Every replica and worker process runs a refit loop: the lock lets one refit, the
    others' schedule skips a fit that just happened, and the API answers 409 meanwhile."""
    runtime = stack.runtime
    async with runtime.engine.connect() as other_process:
        await other_process.scalar(text("SELECT pg_advisory_lock(:k)"), {"k": REFIT_LOCK_KEY})
        await other_process.commit()
        busy = await stack.client.post("/v1/scores/refit", headers=ADMIN)
        assert busy.status_code == 409, busy.text
        assert "another segmenter process" in busy.json()["detail"]
        assert await runtime.scheduled_refit() is None
        await other_process.scalar(text("SELECT pg_advisory_unlock(:k)"), {"k": REFIT_LOCK_KEY})
        await other_process.commit()

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
