"""Compile a rule once into nested closures that evaluate one profile snapshot.

This runs on the event path: :func:`compile_predicate` does all the dispatching,
parsing and constant preparation up front; the returned callable only reads the
snapshot. Its results equal those of :func:`..sql_predicate.compile_sql` for the
same rows and ``now`` (see ``docs/segments.md`` for the shared semantics).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal
from functools import lru_cache
from typing import Any

from services.segmenter.rules.ast import (
    AllRule,
    AnyRule,
    EventCountRule,
    EventValueRule,
    FirstSeenRule,
    LastEventRule,
    LoyaltyTierRule,
    Node,
    NotRule,
    RfmTierRule,
    ScoreRule,
    SegmentRule,
    TraitAge,
    TraitCompare,
    TraitContains,
    TraitEquals,
    TraitExists,
    TraitIn,
)
from services.segmenter.rules.snapshot import DayTotals, ProfileSnapshot
from services.segmenter.rules.sql_functions import INSTANT_PATTERN
from shared.rules.json_values import COMPARE, compare_numbers, is_number, json_equal
from shared.rules.json_values import exact_decimal as _decimal

Predicate = Callable[[ProfileSnapshot, datetime], bool]
"""``predicate(snapshot, now) -> bool``; ``now`` must be timezone-aware."""

# --- instants and amounts ----------------------------------------------------------------

_INSTANT = re.compile(INSTANT_PATTERN, re.ASCII)


@lru_cache(maxsize=8192)
def parse_instant(text: str) -> datetime | None:
    """The UTC instant an ISO-8601 date/datetime string denotes, else None.

    Same acceptance as the SQL ``segmenter.parse_instant``: see ``INSTANT_PATTERN``.
    """
    m = _INSTANT.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, _, sign, off_h, off_m = m.groups()
    try:
        wall = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=UTC,
        )
        if sign is not None:
            offset = timedelta(minutes=int(off_h) * 60 + int(off_m or 0))
            wall = wall - offset if sign == "+" else wall + offset
    except (ValueError, OverflowError):
        return None
    return wall


_EXACT = Context(prec=1000, Emax=MAX_EMAX, Emin=MIN_EMIN)
"""Enough digits that sums of doubles' 15-digit decimals never round."""


def stored_amount(value: float) -> Decimal:
    """A stored ``value_sum`` as SQL sums it: ``double::numeric`` keeps 15 significant digits."""
    return Decimal(format(float(value), ".15g"))


def threshold_amount(value: int | float) -> Decimal:
    """A rule's number as the exact decimal of its JSON text (how it is bound in SQL)."""
    return _decimal(value)


def window_totals(days: Mapping[date, DayTotals], cutoff: date) -> tuple[int, Decimal]:
    """Count and exact value sum of the rollup days after ``cutoff``."""
    count = 0
    total = Decimal(0)
    for day, (day_count, day_sum) in days.items():
        if day > cutoff:
            count += day_count
            total = _EXACT.add(total, stored_amount(day_sum))
    return count, total


def as_utc(now: datetime) -> datetime:
    """``now`` in UTC; raises ``ValueError`` for a naive datetime."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def utc_today(now: datetime) -> date:
    """The UTC calendar date of ``now``."""
    return now.astimezone(UTC).date()


def compare_average(
    op: Callable[[Any, Any], bool], total: Decimal, count: int, threshold: Decimal
) -> bool:
    """``total / count <op> threshold`` exactly; false when ``count`` is 0."""
    return count > 0 and op(total, _EXACT.multiply(threshold, Decimal(count)))


# --- compilers ---------------------------------------------------------------------------


def compile_predicate(rule: Node) -> Predicate:
    """A callable with ``predicate(snapshot, now)`` equal to the rule's value for that profile.

    ``now`` may be in any timezone; durations are measured in UTC (exact elapsed time).
    """
    root = _compile(rule)

    def predicate(s: ProfileSnapshot, now: datetime) -> bool:
        return root(s, now if now.tzinfo is UTC else as_utc(now))

    return predicate


def _compile(rule: Node) -> Predicate:
    return _COMPILERS[type(rule)](rule)


def _all(rule: AllRule) -> Predicate:
    parts = tuple(_compile(child) for child in rule.rules)
    if len(parts) == 1:
        return parts[0]

    def all_(s: ProfileSnapshot, now: datetime) -> bool:
        for part in parts:  # noqa: SIM110 - a plain loop is cheaper than a generator here
            if not part(s, now):
                return False
        return True

    return all_


def _any(rule: AnyRule) -> Predicate:
    parts = tuple(_compile(child) for child in rule.rules)
    if len(parts) == 1:
        return parts[0]

    def any_(s: ProfileSnapshot, now: datetime) -> bool:
        for part in parts:  # noqa: SIM110 - a plain loop is cheaper than a generator here
            if part(s, now):
                return True
        return False

    return any_


def _not(rule: NotRule) -> Predicate:
    part = _compile(rule.rule)

    def not_(s: ProfileSnapshot, now: datetime) -> bool:
        return not part(s, now)

    return not_


def _trait_equals(rule: TraitEquals) -> Predicate:
    key, expected = rule.trait, rule.value
    if isinstance(expected, str):

        def eq(s: ProfileSnapshot, now: datetime) -> bool:
            actual = s.traits.get(key)
            return isinstance(actual, str) and actual == expected

    else:

        def eq(s: ProfileSnapshot, now: datetime) -> bool:
            actual = s.traits.get(key)
            return actual is not None and json_equal(actual, expected)

    if rule.op == "eq":
        return eq

    def neq(s: ProfileSnapshot, now: datetime) -> bool:
        return not eq(s, now)

    return neq


def _trait_compare(rule: TraitCompare) -> Predicate:
    key, expected, op = rule.trait, rule.value, COMPARE[rule.op]
    if isinstance(expected, str):

        def compare_strings(s: ProfileSnapshot, now: datetime) -> bool:
            actual = s.traits.get(key)
            return isinstance(actual, str) and op(actual, expected)

        return compare_strings

    def compare_numbers_(s: ProfileSnapshot, now: datetime) -> bool:
        actual = s.traits.get(key)
        return is_number(actual) and op(compare_numbers(actual, expected), 0)  # type: ignore[arg-type]

    return compare_numbers_


def _trait_in(rule: TraitIn) -> Predicate:
    key = rule.trait
    strings = frozenset(v for v in rule.value if isinstance(v, str))
    others = tuple(v for v in rule.value if not isinstance(v, str))

    def in_(s: ProfileSnapshot, now: datetime) -> bool:
        actual = s.traits.get(key)
        if actual is None:
            return False
        if isinstance(actual, str):
            return actual in strings
        return any(json_equal(actual, v) for v in others)

    return in_


def _trait_contains(rule: TraitContains) -> Predicate:
    key, needle = rule.trait, rule.value

    def contains(s: ProfileSnapshot, now: datetime) -> bool:
        actual = s.traits.get(key)
        if isinstance(actual, str):
            return isinstance(needle, str) and needle in actual
        if isinstance(actual, list | tuple):
            return any(json_equal(item, needle) for item in actual)
        return False

    return contains


def _trait_exists(rule: TraitExists) -> Predicate:
    key, wanted = rule.trait, rule.value

    def exists(s: ProfileSnapshot, now: datetime) -> bool:
        return (s.traits.get(key) is not None) is wanted

    return exists


def _instant_before(delta: timedelta, older: bool) -> Callable[[datetime | None, datetime], bool]:
    """``t < now - delta`` (older) or ``t >= now - delta`` (newer); false for a missing ``t``."""
    if older:

        def older_than(t: datetime | None, now: datetime) -> bool:
            return t is not None and t < now - delta

        return older_than

    def newer_than(t: datetime | None, now: datetime) -> bool:
        return t is not None and t >= now - delta

    return newer_than


def _trait_age(rule: TraitAge) -> Predicate:
    key = rule.trait
    test = _instant_before(timedelta(days=rule.days), rule.op == "older_than")

    def trait_age(s: ProfileSnapshot, now: datetime) -> bool:
        actual = s.traits.get(key)
        return isinstance(actual, str) and test(parse_instant(actual), now)

    return trait_age


def _event_count(rule: EventCountRule) -> Predicate:
    op, wanted = COMPARE[rule.op], rule.count
    if rule.within_days is None:
        event = rule.event

        def all_time_count(s: ProfileSnapshot, now: datetime) -> bool:
            stat = s.event_stats.get(event)
            return op(stat.count if stat is not None else 0, wanted)

        return all_time_count

    key, span = (rule.event, rule.dimension), timedelta(days=rule.within_days)

    def window_count(s: ProfileSnapshot, now: datetime) -> bool:
        days = s.rollups.get(key)
        total = 0
        if days:
            cutoff = utc_today(now) - span
            for day, (count, _) in days.items():
                if day > cutoff:
                    total += count
        return op(total, wanted)

    return window_count


def _event_value(rule: EventValueRule) -> Predicate:
    op, threshold, average = COMPARE[rule.op], threshold_amount(rule.value), rule.aggregate == "avg"

    def decide(count: int, total: Decimal) -> bool:
        if average:
            return compare_average(op, total, count, threshold)
        return op(total, threshold)

    if rule.within_days is None:
        event = rule.event

        def all_time_value(s: ProfileSnapshot, now: datetime) -> bool:
            stat = s.event_stats.get(event)
            if stat is None:
                return decide(0, Decimal(0))
            return decide(stat.count, stored_amount(stat.value_sum))

        return all_time_value

    key, span = (rule.event, rule.dimension), timedelta(days=rule.within_days)

    def window_value(s: ProfileSnapshot, now: datetime) -> bool:
        days = s.rollups.get(key)
        if not days:
            return decide(0, Decimal(0))
        return decide(*window_totals(days, utc_today(now) - span))

    return window_value


def _last_event(rule: LastEventRule) -> Predicate:
    test = _instant_before(timedelta(days=rule.days), rule.older)
    event = rule.event
    if event is None:

        def last_seen(s: ProfileSnapshot, now: datetime) -> bool:
            return test(s.last_seen_at, now)

        return last_seen

    def last_event(s: ProfileSnapshot, now: datetime) -> bool:
        stat = s.event_stats.get(event)
        return stat is not None and test(stat.last_at, now)

    return last_event


def _first_seen(rule: FirstSeenRule) -> Predicate:
    test = _instant_before(timedelta(days=rule.days), rule.older)

    def first_seen(s: ProfileSnapshot, now: datetime) -> bool:
        return test(s.first_seen_at, now)

    return first_seen


def _segment(rule: SegmentRule) -> Predicate:
    segment_id = rule.segment_id

    def member(s: ProfileSnapshot, now: datetime) -> bool:
        return segment_id in s.memberships

    return member


def _score(rule: ScoreRule) -> Predicate:
    get, op, threshold = operator.attrgetter(rule.score), COMPARE[rule.op], float(rule.value)

    def score(s: ProfileSnapshot, now: datetime) -> bool:
        value = get(s)
        return value is not None and op(value, threshold)

    return score


def _loyalty_tier(rule: LoyaltyTierRule) -> Predicate:
    tiers = frozenset(rule.tiers)

    def loyalty_tier(s: ProfileSnapshot, now: datetime) -> bool:
        return s.loyalty_tier in tiers

    return loyalty_tier


def _rfm_tier(rule: RfmTierRule) -> Predicate:
    tiers = frozenset(rule.tiers)

    def rfm_tier(s: ProfileSnapshot, now: datetime) -> bool:
        return s.rfm_tier in tiers

    return rfm_tier


_COMPILERS: dict[type, Callable[[Any], Predicate]] = {
    AllRule: _all,
    AnyRule: _any,
    NotRule: _not,
    TraitEquals: _trait_equals,
    TraitCompare: _trait_compare,
    TraitIn: _trait_in,
    TraitContains: _trait_contains,
    TraitExists: _trait_exists,
    TraitAge: _trait_age,
    EventCountRule: _event_count,
    EventValueRule: _event_value,
    LastEventRule: _last_event,
    FirstSeenRule: _first_seen,
    SegmentRule: _segment,
    ScoreRule: _score,
    RfmTierRule: _rfm_tier,
    LoyaltyTierRule: _loyalty_tier,
}
