"""The Python predicate, leaf by leaf, on the edges the semantics pin down."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from services.segmenter.rules import (
    EventStatView,
    ProfileSnapshot,
    compile_predicate,
    dimension_key,
    parse_instant,
    parse_rule,
)

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
MIDNIGHT = datetime(2024, 3, 10, tzinfo=UTC)
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


def holds(document: dict[str, Any], snapshot: ProfileSnapshot, now: datetime = NOW) -> bool:
    return compile_predicate(parse_rule(document))(snapshot, now)


def trait(op: str, value: Any = None, **fields: Any) -> dict[str, Any]:
    document = {"kind": "trait", "trait": "x", "op": op, **fields}
    if value is not None:
        document["value"] = value
    return document


def with_x(value: Any) -> ProfileSnapshot:
    return snap(traits={"x": value})


MISSING = snap(traits={})
NULL = with_x(None)


# --- trait comparisons -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actual", "expected", "equal"),
    [
        ("pro", "pro", True),
        ("Pro", "pro", False),
        (1, 1.0, True),
        (1.0, 1, True),
        (-0.0, 0, True),
        (10**23, 1e23, True),  # as exact decimals of their JSON text, like jsonb
        (99999999999999991611392, 1e23, False),  # 1e23's binary value is not 1e23
        ("1", 1, False),
        (True, 1, False),
        (False, 0, False),
        (True, True, True),
        ([1, "a"], [1.0, "a"], True),
        ([1, 2], [2, 1], False),
        ({"a": [1, None]}, {"a": [1.0, None]}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ([True], [1], False),
    ],
)
def test_eq_is_json_equality(actual: Any, expected: Any, equal: bool) -> None:
    assert holds(trait("eq", expected), with_x(actual)) is equal
    assert holds(trait("neq", expected), with_x(actual)) is not equal


def test_missing_or_null_trait_is_false_except_for_neq_and_exists_false() -> None:
    for snapshot in (MISSING, NULL):
        assert not holds(trait("eq", "pro"), snapshot)
        assert holds(trait("neq", "pro"), snapshot)
        assert not holds(trait("gt", 0), snapshot)
        assert not holds(trait("lte", "z"), snapshot)
        assert not holds(trait("in", ["pro"]), snapshot)
        assert not holds(trait("contains", "p"), snapshot)
        assert not holds(trait("exists", True), snapshot)
        assert holds(trait("exists", False), snapshot)
        assert not holds(trait("older_than", days=1), snapshot)
        assert not holds(trait("newer_than", days=1), snapshot)


@pytest.mark.parametrize("value", [0, False, "", [], {}])
def test_falsy_values_exist(value: Any) -> None:
    assert holds(trait("exists", True), with_x(value))
    assert not holds(trait("exists", False), with_x(value))


@pytest.mark.parametrize(
    ("op", "actual", "value", "result"),
    [
        ("gt", 2, 1, True),
        ("gt", 1, 1.0, False),
        ("gte", 1, 1.0, True),
        ("lt", 0.1, 0.30000000000000004, True),
        ("lte", 10**23, 1e23, True),
        ("gt", "b", "a", True),
        ("gt", "a", "B", True),  # codepoint order: "B" (0x42) < "a" (0x61)
        ("gt", "é", "z", True),
        ("lt", "", "a", True),
        ("gte", "abc", "abc", True),
        ("gt", "2", 1, False),  # a string is not compared with a number
        ("lt", 1, "2", False),
        ("gt", True, 0, False),  # booleans are not numbers
        ("gt", [5], 1, False),
        ("gt", {"a": 5}, 1, False),
    ],
)
def test_ordering_compares_numbers_with_numbers_and_strings_with_strings(
    op: str, actual: Any, value: Any, result: bool
) -> None:
    assert holds(trait(op, value), with_x(actual)) is result


@pytest.mark.parametrize(
    ("actual", "values", "result"),
    [
        ("DE", ["DE", "AT"], True),
        ("CH", ["DE", "AT"], False),
        (1.0, ["1", 1], True),
        (1, [True], False),
        (True, [1, "true"], False),
        ([1, 2], [[1.0, 2.0]], True),
        ({"a": 1}, [{"a": 1}], True),
    ],
)
def test_in_is_json_equality_with_any(actual: Any, values: list[Any], result: bool) -> None:
    assert holds(trait("in", values), with_x(actual)) is result


@pytest.mark.parametrize(
    ("actual", "needle", "result"),
    [
        ("hello world", "lo w", True),
        ("hello", "Hello", False),  # case-sensitive
        ("hello", "", True),
        ("", "", True),
        ("1234", 23, False),  # a number is not searched in a string
        (["beta", "pro"], "beta", True),
        (["beta-2"], "beta", False),  # lists: element equality, not substrings
        ([1, 2], 2.0, True),
        ([1, 2], True, False),
        ([True], 1, False),
        ([["beta"]], "beta", False),  # only top-level elements
        ({"beta": 1}, "beta", False),
        (5, 5, False),
    ],
)
def test_contains(actual: Any, needle: Any, result: bool) -> None:
    assert holds(trait("contains", needle), with_x(actual)) is result


# --- relative dates in traits ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2024-01-15", datetime(2024, 1, 15, tzinfo=UTC)),
        ("2024-01-15T10:30", datetime(2024, 1, 15, 10, 30, tzinfo=UTC)),
        ("2024-01-15t10:30:05z", datetime(2024, 1, 15, 10, 30, 5, tzinfo=UTC)),
        ("2024-01-15 10:30:05.25", datetime(2024, 1, 15, 10, 30, 5, 250000, tzinfo=UTC)),
        ("2024-01-15T10:30:05.123456789Z", datetime(2024, 1, 15, 10, 30, 5, 123456, tzinfo=UTC)),
        ("2024-01-15T10:30:00+05:30", datetime(2024, 1, 15, 5, 0, tzinfo=UTC)),
        ("2024-01-15T10:30:00-0800", datetime(2024, 1, 15, 18, 30, tzinfo=UTC)),
        ("2024-01-15T10:30+02", datetime(2024, 1, 15, 8, 30, tzinfo=UTC)),
        ("2024-02-29", datetime(2024, 2, 29, tzinfo=UTC)),
        ("9999-12-31T23:59:59.999999", datetime.max.replace(tzinfo=UTC)),
    ],
)
def test_parse_instant_accepts_iso_dates_and_datetimes(text: str, instant: datetime) -> None:
    assert parse_instant(text) == instant


@pytest.mark.parametrize(
    "text",
    [
        "2023-02-29",
        "2024-04-31",
        "2024-13-01",
        "0000-01-01",
        "2024-1-5",
        "2024-01-15T24:00",
        "2024-01-15T10:60",
        "2024-01-15T10:30:60",
        "2024-01-15T10",
        "2024-01-15Z",
        "2024-01-15T10:30:00+24:00",
        "2024-01-15T10:30:00.",
        "2024-01-15T10:30:00.1234567890",
        " 2024-01-15",
        "2024-01-15\n",
        "20240115",
        "٢٠٢٤-01-15",
        "0001-01-01T00:00+00:01",  # before year 1 in UTC
        "9999-12-31T23:59-00:01",  # after year 9999 in UTC
        "yesterday",
    ],
)
def test_parse_instant_rejects_everything_else(text: str) -> None:
    assert parse_instant(text) is None


def test_trait_age_boundaries_are_strict_for_older() -> None:
    cutoff = NOW - timedelta(days=14)
    older, newer = trait("older_than", days=14), trait("newer_than", days=14)
    for instant, is_older in [(cutoff - US, True), (cutoff, False), (cutoff + US, False)]:
        snapshot = with_x(instant.isoformat())
        assert holds(older, snapshot) is is_older
        assert holds(newer, snapshot) is not is_older


def test_trait_age_with_fractional_days_and_offsets() -> None:
    # 0.5 days = 12 hours; 13:59:59 at UTC+02:00 is 11:59:59 UTC
    snapshot = with_x("2024-03-10T13:59:59+02:00")
    assert not holds(trait("older_than", days=0.5), snapshot, now=NOW)
    assert holds(trait("older_than", days=0.5), snapshot, now=NOW + timedelta(hours=12))


def test_date_only_and_naive_traits_are_utc() -> None:
    assert not holds(trait("older_than", days=1), with_x("2024-03-09"), now=MIDNIGHT)
    assert holds(trait("older_than", days=1), with_x("2024-03-09"), now=MIDNIGHT + US)
    assert holds(trait("older_than", days=1), with_x("2024-03-09T00:00:00"), now=MIDNIGHT + US)


@pytest.mark.parametrize("value", ["2024-02-30", "soon", 1710000000, True, ["2024-01-01"]])
def test_trait_age_is_false_for_values_that_are_not_instants(value: Any) -> None:
    assert not holds(trait("older_than", days=1), with_x(value))
    assert not holds(trait("newer_than", days=1), with_x(value))


# --- events ------------------------------------------------------------------------------


def stat(count: int, value_sum: float = 0.0, last_at: datetime = NOW) -> EventStatView:
    return EventStatView(count=count, value_sum=value_sum, first_at=last_at, last_at=last_at)


def rollups(*days: tuple[int, int, float], dimension: str = "") -> dict[Any, Any]:
    """``(days before today, count, value_sum)`` rows of ``Order Completed``."""
    return {(ORDER, dimension): {TODAY - timedelta(days=d): (c, v) for d, c, v in days}}


def event_count(op: str, n: int, **fields: Any) -> dict[str, Any]:
    return {"kind": "event_count", "event": ORDER, "op": op, "count": n, **fields}


def test_all_time_count_reads_event_stats_and_absent_means_zero() -> None:
    three = snap(event_stats={ORDER: stat(3)})
    assert holds(event_count("gte", 3), three)
    assert not holds(event_count("gt", 3), three)
    assert holds(event_count("lte", 2), snap())
    assert holds(event_count("eq", 0), snap())
    assert not holds(event_count("neq", 0), snap())


def test_window_is_the_last_n_utc_days_including_today() -> None:
    # 7 days: today and the 6 days before; today - 7 is out; a future day (skew) is in
    snapshot = snap(rollups=rollups((0, 1, 0), (6, 10, 0), (7, 100, 0), (-1, 1000, 0)))
    assert holds(event_count("eq", 1011, within_days=7), snapshot)
    assert holds(event_count("eq", 1001, within_days=1), snapshot)


def test_window_days_leave_at_utc_midnight() -> None:
    snapshot = snap(rollups=rollups((6, 2, 0)))  # 2024-03-04
    rule = event_count("gte", 2, within_days=7)
    assert holds(rule, snapshot, now=MIDNIGHT + timedelta(days=1) - US)
    assert not holds(rule, snapshot, now=MIDNIGHT + timedelta(days=1))
    # the same instant written in another timezone is still the same UTC day
    late = (MIDNIGHT + timedelta(days=1) - US).astimezone(timezone(timedelta(hours=5)))
    assert holds(rule, snapshot, now=late)


def test_where_reads_the_dimension_rows_only() -> None:
    shoes = dimension_key("category", "shoes")
    snapshot = snap(
        rollups={**rollups((0, 5, 0)), **rollups((0, 2, 0), dimension=shoes)},
    )
    where = {"property": "category", "equals": "shoes"}
    assert holds(event_count("eq", 2, within_days=7, where=where), snapshot)
    assert holds(event_count("eq", 5, within_days=7), snapshot)
    other = {"property": "category", "equals": "hats"}
    assert holds(event_count("eq", 0, within_days=7, where=other), snapshot)


def event_value(aggregate: str, op: str, value: float, **fields: Any) -> dict[str, Any]:
    return {
        "kind": "event_value",
        "event": ORDER,
        "aggregate": aggregate,
        "op": op,
        "value": value,
        **fields,
    }


def test_sum_of_nothing_is_zero_and_avg_of_nothing_is_false() -> None:
    for fields in ({}, {"within_days": 30}):
        assert holds(event_value("sum", "eq", 0, **fields), snap())
        assert holds(event_value("sum", "lt", 1, **fields), snap())
        for op in ("eq", "neq", "gt", "gte", "lt", "lte"):
            assert not holds(event_value("avg", op, 0, **fields), snap())


def test_sums_use_15_significant_digits_per_row_then_exact_arithmetic() -> None:
    snapshot = snap(rollups=rollups((0, 1, 0.1), (1, 1, 0.2)))
    assert holds(event_value("sum", "eq", 0.3, within_days=7), snapshot)
    noisy = snap(event_stats={ORDER: stat(1, 0.30000000000000004)})
    assert holds(event_value("sum", "eq", 0.3), noisy)
    assert not holds(event_value("sum", "gt", 0.3), noisy)


def test_average_is_sum_over_count() -> None:
    snapshot = snap(rollups=rollups((0, 2, 10.0), (1, 1, 20.0), (40, 5, 1000.0)))
    assert holds(event_value("avg", "eq", 10, within_days=30), snapshot)
    assert holds(event_value("sum", "eq", 30, within_days=30), snapshot)
    thirds = snap(event_stats={ORDER: stat(3, 1.0)})
    assert holds(event_value("avg", "gt", 0.333333333333333), thirds)
    assert holds(event_value("avg", "lt", 0.3333333333333334), thirds)
    negative = snap(event_stats={ORDER: stat(2, -5.0)})
    assert holds(event_value("avg", "eq", -2.5), negative)


def last_event(event: str | None, **age: float) -> dict[str, Any]:
    return {"kind": "last_event", "event": event, **age}


def test_last_event_boundaries() -> None:
    cutoff = NOW - timedelta(days=30)
    for at, is_older in [(cutoff - US, True), (cutoff, False)]:
        snapshot = snap(event_stats={ORDER: stat(1, last_at=at)}, last_seen_at=at)
        for event in (ORDER, None):
            assert holds(last_event(event, older_than_days=30), snapshot) is is_older
            assert holds(last_event(event, newer_than_days=30), snapshot) is not is_older


def test_never_doing_the_event_is_neither_older_nor_newer() -> None:
    assert not holds(last_event(ORDER, older_than_days=30), snap())
    assert not holds(last_event(ORDER, newer_than_days=30), snap())
    never_or_long_ago = {"kind": "not", "rule": last_event(ORDER, newer_than_days=30)}
    assert holds(never_or_long_ago, snap())


def test_first_seen() -> None:
    snapshot = snap(first_seen_at=NOW - timedelta(days=14))
    assert not holds({"kind": "first_seen", "older_than_days": 14}, snapshot)
    assert holds({"kind": "first_seen", "newer_than_days": 14}, snapshot)
    assert holds({"kind": "first_seen", "older_than_days": 13.999}, snapshot)


# --- segments and scores -----------------------------------------------------------------


def test_segment_membership() -> None:
    assert holds({"kind": "segment", "segment_id": "vip"}, snap(memberships=frozenset({"vip"})))
    assert not holds({"kind": "segment", "segment_id": "vip"}, snap())


@pytest.mark.parametrize(
    ("field", "value", "op", "threshold", "result"),
    [
        ("churn_risk", 0.7, "gt", 0.7, False),
        ("churn_risk", 0.7, "gte", 0.7, True),
        ("churn_risk", None, "lt", 1, False),
        ("churn_risk", None, "gte", 0, False),
        ("rfm_recency", 4, "gte", 4, True),
        ("rfm_recency", 4, "lt", 4.5, True),
        ("rfm_monetary", 5, "eq", 5.0, True),
        ("predicted_ltv", 100.5, "lte", 100, False),
    ],
)
def test_scores(field: str, value: Any, op: str, threshold: float, result: bool) -> None:
    rule = {"kind": "score", "score": field, "op": op, "value": threshold}
    assert holds(rule, snap(**{field: value})) is result


def test_rfm_tier() -> None:
    rule = {"kind": "rfm_tier", "in": ["champions", "loyal"]}
    assert holds(rule, snap(rfm_tier="loyal"))
    assert not holds(rule, snap(rfm_tier="lost"))
    assert not holds(rule, snap())


# --- composition -------------------------------------------------------------------------


def test_all_any_not() -> None:
    yes, no = trait("exists", True), trait("exists", False)
    snapshot = with_x(1)
    assert holds({"kind": "all", "rules": [yes]}, snapshot)
    assert not holds({"kind": "all", "rules": [yes, no]}, snapshot)
    assert holds({"kind": "any", "rules": [no, yes]}, snapshot)
    assert not holds({"kind": "any", "rules": [no, no]}, snapshot)
    assert holds({"kind": "not", "rule": no}, snapshot)


def test_vip_at_high_churn_risk() -> None:
    rule = {
        "kind": "all",
        "rules": [
            {"kind": "segment", "segment_id": "vip"},
            {"kind": "score", "score": "churn_risk", "op": "gte", "value": 0.7},
        ],
    }
    assert holds(rule, snap(memberships=frozenset({"vip"}), churn_risk=0.9))
    assert not holds(rule, snap(memberships=frozenset({"vip"}), churn_risk=0.5))
    assert not holds(rule, snap(churn_risk=0.9))


def test_now_may_be_in_any_timezone_but_not_naive() -> None:
    predicate = compile_predicate(parse_rule({"kind": "first_seen", "older_than_days": 100}))
    snapshot = snap(first_seen_at=NOW - timedelta(days=100))
    elsewhere = timezone(timedelta(hours=-7))
    assert predicate(snapshot, NOW + US) is predicate(snapshot, (NOW + US).astimezone(elsewhere))
    with pytest.raises(ValueError, match="timezone-aware"):
        predicate(snapshot, NOW.replace(tzinfo=None))
