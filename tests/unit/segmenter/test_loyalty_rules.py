"""Loyalty rules: what events earn, tiers, and FIFO expiry against a point-by-point model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.segmenter.loyalty_rules import Entry, Program, earn, expiry_of, standing

T0 = datetime(2026, 1, 1, tzinfo=UTC)

PROGRAM = Program.model_validate(
    {
        "rules": [
            {
                "kind": "per_revenue",
                "id": "spend",
                "event": "Order Completed",
                "points_per_unit": 1,
            },
            {
                "kind": "per_event",
                "id": "review",
                "event": "Review Submitted",
                "points": 50,
                "where": {"verified": True},
            },
            {"kind": "first_event", "id": "welcome", "event": "Order Completed", "points": 200},
        ],
        "tiers": [
            {"name": "Member", "min_points": 0},
            {"name": "Silver", "min_points": 500, "multiplier": 1.25},
            {"name": "Gold", "min_points": 2000, "multiplier": 1.5},
        ],
        "expire_after_days": 365,
        "qualifying_days": 365,
    }
)


def test_earning_rules() -> None:
    order = earn(PROGRAM, event="Order Completed", properties={"revenue": 99.99})
    assert [(e.rule_id, e.points, e.once) for e in order] == [
        ("spend", 99, False),
        ("welcome", 200, True),
    ]
    gold = PROGRAM.tiers[2]
    assert (
        earn(PROGRAM, event="Order Completed", properties={"total": 100}, tier=gold)[0].points
        == 150
    )
    assert (
        earn(PROGRAM, event="Order Completed", properties={"revenue": "100"})[0].rule_id
        == "welcome"
    )
    assert (
        earn(PROGRAM, event="Order Completed", properties={"revenue": -5})[0].rule_id == "welcome"
    )
    assert earn(PROGRAM, event="Review Submitted", properties={"verified": True})[0].points == 50
    assert earn(PROGRAM, event="Review Submitted", properties={"verified": False}) == []
    assert earn(PROGRAM, event="Page Viewed", properties={}) == []


def test_tiers() -> None:
    assert [PROGRAM.tier_for(p).name for p in (0, 499, 500, 1999, 2000, 10**9)] == [
        "Member",
        "Member",
        "Silver",
        "Silver",
        "Gold",
        "Gold",
    ]
    assert PROGRAM.next_tier(600) == PROGRAM.tiers[2]
    assert PROGRAM.next_tier(5000) is None


@pytest.mark.parametrize(
    "body",
    [
        {"tiers": [{"name": "A", "min_points": 10}]},
        {"tiers": [{"name": "A", "min_points": 0}, {"name": "B", "min_points": 0}]},
        {"rules": [{"kind": "per_event", "id": "x", "event": "E", "points": 1}] * 2},
        {"rules": [{"kind": "per_event", "id": "X Y", "event": "E", "points": 1}]},
        {"rules": [{"kind": "bogus", "id": "x", "event": "E"}]},
    ],
)
def test_bad_programs_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Program.model_validate(body)


def test_points_expire_a_year_after_they_were_earned_oldest_spent_first() -> None:
    entries = [
        Entry(T0, 300, expiry_of(PROGRAM, T0)),
        Entry(T0 + timedelta(days=200), 400, expiry_of(PROGRAM, T0 + timedelta(days=200))),
        Entry(T0 + timedelta(days=250), -350),  # spends 300 of the first lot, 50 of the second
    ]
    before = standing(PROGRAM, entries, now=T0 + timedelta(days=364))
    assert before.balance == 350 and before.expired == 0
    after = standing(PROGRAM, entries, now=T0 + timedelta(days=600))
    assert after.balance == 0 and after.expired == 350
    assert after.tier.name == "Member"  # nothing earned in the last 365 days
    assert standing(PROGRAM, entries, now=T0 + timedelta(days=300)).tier.name == "Silver"


events = st.lists(
    st.tuples(st.integers(0, 800), st.integers(-60, 60).filter(lambda p: p != 0)),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(events, st.integers(0, 1200), st.sampled_from([None, 30, 365]))
def test_fifo_expiry_agrees_with_a_point_by_point_model(
    raw: list[tuple[int, int]], now_day: int, expire_after: int | None
) -> None:
    program = PROGRAM.model_copy(update={"expire_after_days": expire_after})
    entries = [
        Entry(
            T0 + timedelta(days=d), p, expiry_of(program, T0 + timedelta(days=d)) if p > 0 else None
        )
        for d, p in raw
    ]
    now = T0 + timedelta(days=now_day)
    got = standing(program, entries, now=now)
    # the model: every point a unit with its expiry; a spend takes the oldest live units
    units: list[datetime | None] = []
    expired = 0
    for entry in sorted((e for e in entries if e.at <= now), key=lambda e: (e.at, -e.points)):
        live = [u for u in units if u is None or u > entry.at]
        expired += len(units) - len(live)
        units = live
        if entry.points > 0:
            units += [entry.expires_at] * entry.points
        else:
            units = units[min(-entry.points, len(units)) :]
    live = [u for u in units if u is None or u > now]
    expired += len(units) - len(live)
    assert got.balance == len(live)
    assert got.expired == expired
    assert got.earned_qualifying == sum(
        e.points for e in entries if e.points > 0 and now - timedelta(days=365) < e.at <= now
    )
