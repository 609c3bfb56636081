"""The churn model through the service: its SQL snapshots agree with snapshots the test
builds itself from a simulated history, and a refit learns, backtests and reports.

The simulated history is written straight into the segmenter's tables (profiles,
statistics, daily rollups), as the consumer would have left them: thousands of customers
over two years would take minutes through the broker, and the consumer's writing of
rollups is tested elsewhere.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from services.segmenter.scoring.churn import BASELINE, CANDIDATES, HEURISTIC
from services.segmenter.scoring.churn_sql import boundaries, churn_snapshots
from shared.db.engine import driver_connection
from tests.integration.segmenter.conftest import ADMIN, Stack
from tests.unit.segmenter.churn_sim import Population, simulate, snapshot

H = 90
NOW = 720  # the simulation's day boundary that is "today + 1" for the service's clock
ORDER, SESSION = "Order Completed", "Session Started"


def _day(boundary_now: date, sim_day: int) -> date:
    return boundary_now + timedelta(days=sim_day - NOW)


async def _write(stack: Stack, population: Population, boundary_now: date) -> None:
    """Profiles, statistics and rollups of the simulated days before ``NOW``."""
    profiles: list[tuple[Any, ...]] = []
    stats: list[tuple[Any, ...]] = []
    rollups: dict[tuple[str, str, date], list[float]] = {}
    for i, customer in enumerate(population.ids):
        start = _day(boundary_now, int(population.start_days[i]))
        seen: list[date] = [start]
        for name, days, values in (
            (ORDER, population.purchase_days[i], population.purchase_values[i]),
            (SESSION, population.session_days[i], np.zeros(population.session_days[i].size)),
        ):
            past = days < NOW
            if not past.any():
                continue
            dates = [_day(boundary_now, int(d)) for d in days[past]]
            for d, v in zip(dates, values[past].tolist(), strict=True):
                totals = rollups.setdefault((customer, name, d), [0, 0.0])
                totals[0] += 1
                totals[1] += v
            first = datetime.combine(min(dates), time(12), UTC)
            last = datetime.combine(max(dates), time(12), UTC)
            stats.append((customer, name, len(dates), float(values[past].sum()), first, last))
            seen += dates
        first_seen = datetime.combine(start, time(0), UTC)
        profiles.append((customer, first_seen, datetime.combine(max(seen), time(12), UTC)))
    async with stack.runtime.engine.begin() as conn:
        driver = await driver_connection(conn)
        await driver.copy_records_to_table(
            "profiles",
            schema_name="segmenter",
            columns=["customer_id", "first_seen_at", "last_seen_at"],
            records=profiles,
        )
        await driver.copy_records_to_table(
            "event_stats",
            schema_name="segmenter",
            columns=["customer_id", "event_name", "count", "value_sum", "first_at", "last_at"],
            records=stats,
        )
        await driver.copy_records_to_table(
            "event_rollups",
            schema_name="segmenter",
            columns=["customer_id", "event_name", "day", "dimension", "count", "value_sum"],
            records=[(c, e, d, "", int(n), v) for (c, e, d), (n, v) in rollups.items()],
        )
        await conn.execute(text("ANALYZE segmenter.event_rollups"))


@pytest.fixture(scope="module")
async def population(stack: Stack) -> Population:
    found = simulate(3_000, end_day=NOW + H, seed=5)
    _, boundary_now = boundaries(stack.clock.now, H)
    await _write(stack, found, boundary_now)
    return found


async def test_the_sql_snapshots_agree_with_the_history(
    stack: Stack, population: Population
) -> None:
    async with stack.runtime.engine.connect() as conn:
        training, current = await churn_snapshots(
            conn, event=ORDER, horizon_days=H, engagement_events=(SESSION,), now=stack.clock.now
        )
    for ours, boundary, labelled in ((training, NOW - H, True), (current, NOW, False)):
        expected, _ = snapshot(population, boundary, H, labelled=labelled)
        order = np.argsort(np.asarray(ours.customer_ids, dtype=object))
        want = np.argsort(np.asarray(expected.customer_ids, dtype=object))
        assert [ours.customer_ids[i] for i in order] == [expected.customer_ids[i] for i in want]
        for name in (
            "days_since_event",
            "since_first_event",
            "first_to_last_event",
            "occasions",
            "mean_value",
            "tenure",
            "days_since_seen",
            "recent_events",
            "engagement",
        ):
            got, exp = getattr(ours, name)[order], getattr(expected, name)[want]
            assert np.allclose(got, exp, equal_nan=True), name
        if labelled:
            assert ours.churned is not None and expected.churned is not None
            assert np.array_equal(ours.churned[order], expected.churned[want])
    assert ours.as_of == boundaries(stack.clock.now, H)[1]


async def test_a_refit_learns_churn_reports_the_backtest_and_scores_everyone(
    stack: Stack, population: Population
) -> None:
    fit = await stack.client.post("/v1/scores/refit", headers=ADMIN)
    assert fit.status_code == 200, fit.text
    report = fit.json()
    churn = report["churn"]
    assert churn["definition"] == "no 'Order Completed' within 90 days"
    assert [c["name"] for c in churn["candidates"]] == list(CANDIDATES)
    by_name = {c["name"]: c for c in churn["candidates"]}
    assert report["method"] == churn["method"]
    chosen, base = by_name[report["method"]], by_name[BASELINE]
    if report["method"] != BASELINE:  # replaces recency only beyond the spread
        assert chosen["auc"] - base["auc"] > max(chosen["auc_sd"], base["auc_sd"])
    for candidate in churn["candidates"]:
        assert 0.5 < candidate["auc"] <= 1 and 0 < candidate["brier"] < 0.25
        assert candidate["auc_sd"] >= 0 and len(candidate["fold_aucs"]) == churn["folds"]
        assert candidate["test_customers"] > 0 and candidate["test_churners"] > 0
    assert len(churn["calibration"]) == 10
    assert {t["tier"] for t in churn["tiers"]} >= {"never", "champions", "lost"}
    assert report["ltv_method"] == "bgnbd_gamma_gamma"
    assert report["as_of"] == stack.clock.now.date().isoformat()

    metrics = (await stack.client.get("/metrics")).text
    for name in CANDIDATES:
        assert f'tenure_segmenter_churn_backtest_auc{{candidate="{name}"}}' in metrics
        assert f'tenure_segmenter_churn_backtest_brier{{candidate="{name}"}}' in metrics
    assert f'tenure_segmenter_churn_model_used{{method="{report["method"]}"}} 1.0' in metrics
    test_size = churn["candidates"][0]["test_customers"]
    assert (
        f'tenure_segmenter_churn_backtest_customers{{outcome="all",set="test"}} {test_size:.1f}'
        in metrics
    )

    async with stack.runtime.engine.connect() as conn:
        methods: dict[str, int] = dict(
            (
                await conn.execute(
                    text(
                        "SELECT score_method, count(*) FROM segmenter.profiles "
                        "WHERE churn_risk BETWEEN 0 AND 1 GROUP BY 1"
                    )
                )
            )
            .tuples()
            .all()
        )
    assert methods == {report["method"]: len(population.ids)}

    # a recent repeat buyer is at much lower risk than one who lapsed long ago
    last = {
        c: int(d[d < NOW].max())
        for c, d in zip(population.ids, population.purchase_days, strict=True)
        if (d < NOW).sum() >= 3
    }
    recent = min(last, key=lambda c: NOW - last[c])
    lapsed = min(last, key=lambda c: last[c])
    scores = {
        c: (await stack.client.get(f"/v1/profiles/{c}", headers=ADMIN)).json()["scores"]
        for c in (recent, lapsed)
    }
    assert scores[recent]["churn_risk"] < 0.5 < scores[lapsed]["churn_risk"], scores
    assert scores[recent]["explanation"]["method"] == report["method"]


async def test_an_imported_history_is_scored_as_of_its_own_end(
    stack: Stack, population: Population
) -> None:
    """A history replayed a year later: at the wall clock nobody bought in the last H days
    (the heuristic); as of the history's end, the model learns, and the fit is kept
    under that day."""
    end = stack.clock.now.date()
    saved = stack.clock.now
    stack.clock.advance(days=365)
    try:
        late = await stack.client.post("/v1/scores/refit", headers=ADMIN)
        assert late.status_code == 200, late.text
        assert late.json()["method"] == HEURISTIC and "0 stayed" in late.json()["reason"]

        fit = await stack.client.post(f"/v1/scores/refit?as_of={end}", headers=ADMIN)
        assert fit.status_code == 200, fit.text
        report = fit.json()
        assert report["as_of"] == end.isoformat()
        assert report["method"] in CANDIDATES
        assert report["churn"]["scoring_as_of"] == (end + timedelta(days=1)).isoformat()
        assert report["churn"]["training_as_of"] == boundaries(saved, H)[0].isoformat()
        assert report["ltv_method"] == "bgnbd_gamma_gamma"

        stored = await stack.client.get(f"/v1/scores/fit?as_of={end}", headers=ADMIN)
        assert stored.status_code == 200, stored.text
        assert (stored.json()["as_of"], stored.json()["churn"]) == (
            end.isoformat(),
            report["churn"],
        )
    finally:
        stack.clock.now = saved


async def test_two_refits_in_a_row_where_bgnbd_cannot_fit_both_answer_200(
    stack: Stack, population: Population
) -> None:
    """Nobody bought on more than one day (the history cut to each buyer's last day):
    BG/NBD cannot be fitted; its candidate says so, the refit still scores everybody, and
    the next refit too. (Last in the module: it rewrites the history.)"""
    async with stack.runtime.engine.begin() as conn:
        await conn.execute(
            text(
                """
                DELETE FROM segmenter.event_rollups r USING (
                    SELECT customer_id, max(day) AS last_day FROM segmenter.event_rollups
                    WHERE event_name = :event GROUP BY customer_id
                ) f
                WHERE r.customer_id = f.customer_id AND r.event_name = :event
                  AND r.day < f.last_day
                """
            ),
            {"event": ORDER},
        )
        await conn.execute(
            text(
                "UPDATE segmenter.event_stats SET count = 1, first_at = last_at "
                "WHERE event_name = :event"
            ),
            {"event": ORDER},
        )
    for _ in range(2):
        fit = await stack.client.post("/v1/scores/refit", headers=ADMIN)
        assert fit.status_code == 200, fit.text
        churn = fit.json()["churn"]
        assert churn["candidates"], churn["reason"]  # some bought in the last H days
        bgnbd = next(c for c in churn["candidates"] if c["name"] == "bgnbd")
        assert bgnbd["auc"] is None and "BG/NBD" in bgnbd["note"]
        assert churn["method"] not in ("bgnbd", HEURISTIC)
