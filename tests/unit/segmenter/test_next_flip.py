"""next_flip: the value never changes before it, and the time leaves do change right at it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.segmenter.rules import (
    EventStatView,
    Node,
    ProfileSnapshot,
    compile_predicate,
    dimension_key,
    next_flip,
    parse_rule,
)
from services.segmenter.rules.next_flip import LATEST, compile_next_flip

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
TODAY = date(2024, 3, 10)
US = timedelta(microseconds=1)
ORDER = "Order Completed"


def snap(**fields: Any) -> ProfileSnapshot:
    defaults: dict[str, Any] = {
        "customer_id": "c1",
        "first_seen_at": NOW - timedelta(days=100),
        "last_seen_at": NOW - timedelta(days=1),
    }
    return ProfileSnapshot(**{**defaults, **fields})


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class Clock:
    """An injected clock for one rule and one profile: read the value, jump to the next flip."""

    def __init__(self, document: dict[str, Any], snapshot: ProfileSnapshot, now: datetime) -> None:
        self.rule = parse_rule(document)
        self.predicate = compile_predicate(self.rule)
        self.snapshot = snapshot
        self.now = now

    @property
    def value(self) -> bool:
        return self.predicate(self.snapshot, self.now)

    def next_flip(self) -> datetime | None:
        return next_flip(self.rule, self.snapshot, self.now)

    def value_at(self, at: datetime) -> bool:
        return self.predicate(self.snapshot, at)


def assert_flips_exactly_at(clock: Clock, expected: datetime) -> None:
    flip = clock.next_flip()
    assert flip == expected
    assert clock.value_at(flip - US) is clock.value
    assert clock.value_at(flip) is not clock.value
    clock.now = flip  # advance the clock past the flip: the value has changed
    assert clock.value is not clock.value_at(flip - US)


def test_trait_age_flips_one_microsecond_after_t_plus_d() -> None:
    t = NOW - timedelta(days=10)
    for op in ("older_than", "newer_than"):
        document = {"kind": "trait", "trait": "signed_up_at", "op": op, "days": 14}
        clock = Clock(document, snap(traits={"signed_up_at": t.isoformat()}), NOW)
        assert_flips_exactly_at(clock, t + timedelta(days=14) + US)
        assert clock.next_flip() is None  # it only flips once


def test_fractional_days() -> None:
    t = NOW - timedelta(hours=1)
    document = {"kind": "trait", "trait": "t", "op": "older_than", "days": 0.25}
    clock = Clock(document, snap(traits={"t": t.isoformat()}), NOW)
    assert_flips_exactly_at(clock, t + timedelta(hours=6) + US)


def test_last_event_and_first_seen() -> None:
    last = NOW - timedelta(days=2, hours=3)
    snapshot = snap(
        event_stats={ORDER: EventStatView(1, 0.0, last, last)},
        last_seen_at=NOW - timedelta(hours=5),
        first_seen_at=NOW - timedelta(days=13),
    )
    for document, expected in [
        ({"kind": "last_event", "event": ORDER, "older_than_days": 30}, last + timedelta(days=30)),
        ({"kind": "last_event", "newer_than_days": 1}, NOW - timedelta(hours=5) + timedelta(1)),
        ({"kind": "first_seen", "older_than_days": 14}, NOW + timedelta(days=1)),
    ]:
        assert_flips_exactly_at(Clock(document, snapshot, NOW), expected + US)


def test_window_rows_leave_at_utc_midnight() -> None:
    days = {TODAY - timedelta(days=88): (1, 10.0), TODAY - timedelta(days=3): (2, 5.0)}
    snapshot = snap(rollups={(ORDER, ""): days})
    rule = {"kind": "event_count", "event": ORDER, "op": "gte", "count": 3, "within_days": 90}
    clock = Clock(rule, snapshot, NOW)
    assert clock.value
    assert_flips_exactly_at(clock, midnight(TODAY + timedelta(days=2)))  # day -88 leaves
    assert clock.next_flip() == midnight(TODAY + timedelta(days=87))  # then day -3 leaves


def test_window_with_a_filter_reads_its_dimension() -> None:
    shoes = dimension_key("category", "shoes")
    snapshot = snap(
        rollups={
            (ORDER, shoes): {TODAY - timedelta(days=5): (1, 0.0)},
            (ORDER, ""): {TODAY - timedelta(days=1): (1, 0.0)},
        }
    )
    document = {
        "kind": "event_value",
        "event": ORDER,
        "aggregate": "avg",
        "op": "gte",
        "value": 0,
        "within_days": 7,
        "where": {"property": "category", "equals": "shoes"},
    }
    assert_flips_exactly_at(Clock(document, snapshot, NOW), midnight(TODAY + timedelta(days=2)))


@pytest.mark.parametrize(
    "document",
    [
        {"kind": "trait", "trait": "plan", "op": "eq", "value": "pro"},
        {"kind": "segment", "segment_id": "vip"},
        {"kind": "score", "score": "churn_risk", "op": "gt", "value": 0.5},
        {"kind": "rfm_tier", "in": ["lost"]},
        {"kind": "event_count", "event": ORDER, "op": "gte", "count": 1},  # all time
        {"kind": "trait", "trait": "missing", "op": "older_than", "days": 1},
        {"kind": "trait", "trait": "bad", "op": "older_than", "days": 1},
        {"kind": "last_event", "event": "Never Done", "older_than_days": 1},
        {"kind": "last_event", "event": ORDER, "older_than_days": 1},  # already older
        {"kind": "event_count", "event": ORDER, "op": "gte", "count": 1, "within_days": 7},
    ],
)
def test_none_when_nothing_can_change_by_itself(document: dict[str, Any]) -> None:
    long_ago = NOW - timedelta(days=60)
    snapshot = snap(
        traits={"plan": "pro", "bad": "2024-02-30"},
        event_stats={ORDER: EventStatView(1, 0.0, long_ago, long_ago)},
        rollups={(ORDER, ""): {TODAY - timedelta(days=60): (1, 0.0)}},  # outside 7 days
    )
    clock = Clock(document, snapshot, NOW)
    assert clock.next_flip() is None
    assert clock.value_at(NOW + timedelta(days=3650)) is clock.value


def test_composites_take_the_earliest_child() -> None:
    snapshot = snap(traits={"a": (NOW - timedelta(days=1)).isoformat()})
    document = {
        "kind": "not",
        "rule": {
            "kind": "any",
            "rules": [
                {"kind": "segment", "segment_id": "vip"},
                {"kind": "trait", "trait": "a", "op": "older_than", "days": 7},
                {"kind": "trait", "trait": "a", "op": "older_than", "days": 3},
            ],
        },
    }
    assert Clock(document, snapshot, NOW).next_flip() == NOW + timedelta(days=2) + US


def test_flips_past_year_9999_are_none() -> None:
    document = {"kind": "trait", "trait": "t", "op": "older_than", "days": 30}
    snapshot = snap(traits={"t": "9999-12-20"})
    assert next_flip(parse_rule(document), snapshot, NOW) is None
    assert LATEST.year == 9999


def test_compiled_and_cached_forms_agree() -> None:
    rule = parse_rule({"kind": "first_seen", "newer_than_days": 365})
    snapshot = snap()
    assert compile_next_flip(rule)(snapshot, NOW) == next_flip(rule, snapshot, NOW)
    assert next_flip(rule, snapshot, NOW) == next_flip(rule, snapshot, NOW)


# --- property: the value is constant from now until the next flip -------------------------

DAYS = [0.25, 1, 1.5, 7, 30]
WINDOWS = [1, 7, 30]
NEAR = [timedelta(0), US, -US, timedelta(hours=5), -timedelta(days=2)]

instants = st.builds(
    lambda d, j: NOW - timedelta(days=d) + j, st.sampled_from([*DAYS, 0]), st.sampled_from(NEAR)
)
age = st.sampled_from(["older_than_days", "newer_than_days"]).flatmap(
    lambda key: st.fixed_dictionaries({key: st.sampled_from(DAYS)})
)
leaves = st.one_of(
    st.builds(
        lambda op, d: {"kind": "trait", "trait": "t", "op": op, "days": d},
        st.sampled_from(["older_than", "newer_than"]),
        st.sampled_from(DAYS),
    ),
    st.builds(
        lambda e, a: {"kind": "last_event", "event": e, **a}, st.none() | st.just(ORDER), age
    ),
    st.builds(lambda a: {"kind": "first_seen", **a}, age),
    st.builds(
        lambda op, n, w: {
            "kind": "event_count",
            "event": ORDER,
            "op": op,
            "count": n,
            "within_days": w,
        },
        st.sampled_from(["eq", "gte", "lt"]),
        st.integers(0, 3),
        st.sampled_from(WINDOWS),
    ),
    st.builds(
        lambda agg, v, w: {
            "kind": "event_value",
            "event": ORDER,
            "aggregate": agg,
            "op": "gte",
            "value": v,
            "within_days": w,
        },
        st.sampled_from(["sum", "avg"]),
        st.sampled_from([0, 5, 10]),
        st.sampled_from(WINDOWS),
    ),
    st.just({"kind": "segment", "segment_id": "vip"}),
    st.just({"kind": "trait", "trait": "plan", "op": "eq", "value": "pro"}),
)
rules = st.recursive(
    leaves,
    lambda c: st.one_of(
        st.builds(lambda rs: {"kind": "all", "rules": rs}, st.lists(c, min_size=1, max_size=3)),
        st.builds(lambda rs: {"kind": "any", "rules": rs}, st.lists(c, min_size=1, max_size=3)),
        st.builds(lambda r: {"kind": "not", "rule": r}, c),
    ),
    max_leaves=5,
).map(parse_rule)
snapshots = st.builds(
    snap,
    traits=st.fixed_dictionaries(
        {}, optional={"t": instants.map(lambda t: t.isoformat()), "plan": st.just("pro")}
    ),
    first_seen_at=instants,
    last_seen_at=instants,
    event_stats=st.dictionaries(
        st.just(ORDER),
        st.builds(EventStatView, st.integers(1, 3), st.just(5.0), instants, instants),
    ),
    rollups=st.dictionaries(
        st.just((ORDER, "")),
        st.dictionaries(
            st.integers(-31, 1).map(lambda d: TODAY + timedelta(days=d)),
            st.tuples(st.integers(1, 2), st.sampled_from([0.0, 5.0, 10.0])),
            max_size=4,
        ),
    ),
    memberships=st.frozensets(st.just("vip")),
)
nows = st.sampled_from(
    [
        NOW,
        NOW - timedelta(hours=12),
        NOW + timedelta(hours=12) - US,
        NOW - timedelta(days=1, hours=1),
    ]
)


@settings(max_examples=300, deadline=None)
@given(rule=rules, snapshot=snapshots, now=nows, fractions=st.lists(st.floats(0, 1), max_size=5))
def test_value_is_constant_until_the_next_flip(
    rule: Node, snapshot: ProfileSnapshot, now: datetime, fractions: list[float]
) -> None:
    predicate = compile_predicate(rule)
    value = predicate(snapshot, now)
    flip = next_flip(rule, snapshot, now)
    if flip is None:
        later = [now + timedelta(days=d) for d in (1, 31, 400, 3650)]
    else:
        assert flip > now
        later = [flip - US, *(now + (flip - US - now) * f for f in fractions)]
    for at in later:
        assert predicate(snapshot, at) is value, at


@settings(max_examples=100, deadline=None)
@given(rule=rules, snapshot=snapshots, now=nows)
def test_walking_from_flip_to_flip_sees_every_change(
    rule: Node, snapshot: ProfileSnapshot, now: datetime
) -> None:
    """A timer that re-evaluates at each flip sees the same values as a clock ticking hourly."""
    predicate = compile_predicate(rule)
    end = now + timedelta(days=40)
    flips = [now]
    while (flip := next_flip(rule, snapshot, flips[-1])) is not None and flip <= end:
        flips.append(flip)
    tick = now
    while tick <= end:
        last_flip = max(f for f in flips if f <= tick)
        assert predicate(snapshot, tick) is predicate(snapshot, last_flip), (tick, last_flip)
        tick += timedelta(hours=1)
