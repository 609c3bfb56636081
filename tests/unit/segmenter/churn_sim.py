"""A simulated customer base whose churners are known, and snapshots built from it here
(independently of the code under test, which builds them in SQL from the rollups).

Each customer arrives on a uniform day, buys as a Poisson process (rate ~ Gamma, per
customer) until a hidden death day (exponential lifetime), and has sessions at a rate
that grows with the buying rate and stops a little before death (disengagement). A fifth
only browse: they never buy. The truth for a boundary ``D`` is computed from the
simulated purchases themselves: churned = no purchase on any of the ``H`` days from ``D``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from services.segmenter.scoring.churn import Snapshot

EPOCH = date(2024, 1, 1)


@dataclass(frozen=True)
class Population:
    purchase_days: list[np.ndarray]  # sorted int days per customer
    purchase_values: list[np.ndarray]
    session_days: list[np.ndarray]
    start_days: np.ndarray

    @property
    def ids(self) -> list[str]:
        return [f"c{i}" for i in range(len(self.start_days))]


def simulate(n: int, *, end_day: int, seed: int = 1) -> Population:
    rng = np.random.default_rng(seed)
    start = rng.integers(0, end_day - 120, n)
    rate = rng.gamma(0.9, 1 / 25.0, n)  # purchases a day, mean 0.036
    browser = rng.random(n) < 0.2
    death = start + rng.exponential(260.0, n)
    purchases, values, sessions = [], [], []
    for i in range(n):
        alive_to = min(death[i], end_day)
        span = max(alive_to - start[i], 0.0)
        if browser[i]:
            days = np.array([], dtype=np.int64)
        else:
            k = rng.poisson(rate[i] * span)
            days = np.sort(
                np.concatenate([[start[i]], start[i] + rng.random(k) * span]).astype(np.int64)
            )
        purchases.append(days)
        values.append(rng.gamma(2.0, 20.0 * (1 + rate[i] * 10), days.size))
        quiet_from = min(death[i] - 20.0, end_day)  # disengaged for ~20 days before leaving
        s_span = max(quiet_from - start[i], 0.0)
        m = rng.poisson((0.02 + 2.0 * rate[i]) * s_span)
        sessions.append(np.sort((start[i] + rng.random(m) * s_span).astype(np.int64)))
    return Population(purchases, values, sessions, start)


def churned_truth(pop: Population, boundary: int, horizon: int) -> np.ndarray:
    """No purchase on days ``boundary .. boundary + horizon - 1`` (computed from the
    simulation, not by the code under test)."""
    return np.array(
        [not np.any((d >= boundary) & (d < boundary + horizon)) for d in pop.purchase_days]
    )


def snapshot(
    pop: Population, boundary: int, horizon: int, *, labelled: bool
) -> tuple[Snapshot, np.ndarray]:
    """Features as of the start of day ``boundary`` for the customers who arrived before
    it, and their indices in the population."""
    who = np.flatnonzero(pop.start_days < boundary)
    rows = []
    for i in who.tolist():
        p = np.unique(pop.purchase_days[i][pop.purchase_days[i] < boundary])
        pv = pop.purchase_values[i][pop.purchase_days[i] < boundary]
        s = pop.session_days[i][pop.session_days[i] < boundary]
        all_days = np.concatenate([p, s]) if s.size or p.size else np.array([pop.start_days[i]])
        recent = int(np.sum(s >= boundary - horizon))
        rows.append(
            (
                boundary - p[-1] if p.size else np.nan,
                boundary - p[0] if p.size else np.nan,
                float(p[-1] - p[0]) if p.size else 0.0,
                float(p.size),
                float(pv.sum() / p.size) if p.size else 0.0,
                float(boundary - pop.start_days[i]),
                float(boundary - all_days.max()),
                float(recent),
            )
        )
    cols = np.array(rows, dtype=np.float64).reshape(-1, 8)
    snap = Snapshot(
        as_of=EPOCH + timedelta(days=boundary),
        customer_ids=[f"c{i}" for i in who.tolist()],
        days_since_event=cols[:, 0],
        since_first_event=cols[:, 1],
        first_to_last_event=cols[:, 2],
        occasions=cols[:, 3],
        mean_value=cols[:, 4],
        tenure=cols[:, 5],
        days_since_seen=cols[:, 6],
        recent_events=cols[:, 7],
        engagement=cols[:, 7:8],
        engagement_names=("Session Started",),
        churned=churned_truth(pop, boundary, horizon)[who] if labelled else None,
    )
    return snap, who
