"""When can a rule's value next change with no new event? For timers, not full scans.

A rule's value changes with the clock alone only through its time-dependent
leaves. Each yields the first instant after ``now`` at which its own value may
differ; the rule's next flip is the earliest of them, whatever the composites
above (a composite cannot change unless a leaf does). The answer may be early
(nothing changes then: re-evaluate and ask again) but is never late:

- age leaves (trait ``older_than``/``newer_than``, ``last_event``, ``first_seen``)
  compare an instant ``t`` with ``now - D``; they flip at ``t + D + 1µs``, the first
  instant where ``t < now - D`` holds (they only count if that is after ``now``);
- windowed ``event_count``/``event_value`` change when a rollup day leaves the
  window: day ``d`` of an ``N``-day window leaves at UTC midnight of ``d + N``; the
  earliest day inside the window leaves first;
- everything else (traits, all-time event stats, segments, scores) changes only
  through a new event or another process, never by itself.

Instants past 9999-12-31 (Python's ``datetime.max``) are "never". ``next_flip`` and
``next_flip_sql`` return equal results for the same rows and ``now``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    DateTime,
    Interval,
    Text,
    func,
    literal,
    literal_column,
    null,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.sql.elements import ColumnElement

from services.segmenter.rules.ast import (
    EventCountRule,
    EventValueRule,
    FirstSeenRule,
    LastEventRule,
    Node,
    TraitAge,
    is_time_dependent_leaf,
    walk,
)
from services.segmenter.rules.python_predicate import as_utc, parse_instant, utc_today
from services.segmenter.rules.snapshot import ProfileSnapshot
from services.segmenter.rules.sql_lookups import CorrelatedLookups, EventLookups
from services.segmenter.rules.sql_predicate import (
    TIMESTAMPTZ,
    instant,
    profiles,
    trait_instant,
    window_cutoff,
)

FlipFunction = Callable[[ProfileSnapshot, datetime], datetime | None]
"""``flip(snapshot, now)``: the next instant > ``now`` the rule may change, or None."""

TICK = timedelta(microseconds=1)
"""The resolution of instants (PostgreSQL ``timestamptz`` and Python ``datetime``)."""
LATEST = datetime.max.replace(tzinfo=UTC)
"""Flips after this instant are reported as None."""


def age_flip(at: datetime | None, delta: timedelta, now: datetime) -> datetime | None:
    """``at + delta + 1µs`` if that is after ``now`` (and representable), else None."""
    if at is None:
        return None
    try:
        flip = at + delta + TICK
    except OverflowError:
        return None
    return flip if flip > now else None


def window_flip(first_day: date | None, within_days: int) -> datetime | None:
    """UTC midnight at which ``first_day`` leaves a ``within_days`` window, or None."""
    if first_day is None:
        return None
    try:
        leaves = first_day + timedelta(days=within_days)
    except OverflowError:
        return None
    return datetime.combine(leaves, time(), tzinfo=UTC)


# --- Python ------------------------------------------------------------------------------


def compile_next_flip(rule: Node) -> FlipFunction:
    """``flip(snapshot, now)`` as :func:`next_flip`, with the rule analysed once."""
    leaves = tuple(_leaf_flip(node) for node in walk(rule) if is_time_dependent_leaf(node))

    def flip(s: ProfileSnapshot, now: datetime) -> datetime | None:
        now = as_utc(now)
        earliest: datetime | None = None
        for leaf in leaves:
            at = leaf(s, now)
            if at is not None and (earliest is None or at < earliest):
                earliest = at
        return earliest

    return flip


_COMPILED: dict[int, tuple[Node, FlipFunction]] = {}
_COMPILED_MAX = 4096


def next_flip(rule: Node, snapshot: ProfileSnapshot, now: datetime) -> datetime | None:
    """The earliest instant > ``now`` at which the rule's value may change with no new event.

    Never later than a real change; None when no time-dependent condition can change.
    The rule's analysis is cached per rule object, so calling this on the event path
    costs about as much as a :func:`compile_next_flip` function.
    """
    cached = _COMPILED.get(id(rule))
    if cached is None or cached[0] is not rule:
        cached = (rule, compile_next_flip(rule))
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[id(rule)] = cached
    return cached[1](snapshot, now)


def _leaf_flip(node: Node) -> FlipFunction:
    if isinstance(node, TraitAge):
        key, delta = node.trait, timedelta(days=node.days)

        def trait_flip(s: ProfileSnapshot, now: datetime) -> datetime | None:
            value = s.traits.get(key)
            return age_flip(parse_instant(value), delta, now) if isinstance(value, str) else None

        return trait_flip
    if isinstance(node, LastEventRule):
        event, delta = node.event, timedelta(days=node.days)

        def last_event_flip(s: ProfileSnapshot, now: datetime) -> datetime | None:
            if event is None:
                return age_flip(s.last_seen_at, delta, now)
            stat = s.event_stats.get(event)
            return age_flip(stat.last_at, delta, now) if stat is not None else None

        return last_event_flip
    if isinstance(node, FirstSeenRule):
        delta = timedelta(days=node.days)

        def first_seen_flip(s: ProfileSnapshot, now: datetime) -> datetime | None:
            return age_flip(s.first_seen_at, delta, now)

        return first_seen_flip
    assert isinstance(node, EventCountRule | EventValueRule) and node.within_days is not None
    rollup_key, within_days = (node.event, node.dimension), node.within_days
    span = timedelta(days=within_days)

    def window_leaf_flip(s: ProfileSnapshot, now: datetime) -> datetime | None:
        days = s.rollups.get(rollup_key)
        if not days:
            return None
        cutoff = utc_today(now) - span
        return window_flip(min((d for d in days if d > cutoff), default=None), within_days)

    return window_leaf_flip


# --- SQL ---------------------------------------------------------------------------------


def next_flip_sql(
    rule: Node, *, now: datetime, lookups: EventLookups | None = None
) -> ColumnElement[datetime | None]:
    """Per row of ``segmenter.profiles``, the same instant as :func:`next_flip` (NULL = None).

    One ``LEAST`` over the leaves' candidates. With :class:`..sql_lookups.SharedLookups`,
    select ``FROM lookups.source()``.
    """
    now = as_utc(now)
    lookups = lookups or CorrelatedLookups()
    candidates = [
        _leaf_flip_sql(node, now, lookups) for node in walk(rule) if is_time_dependent_leaf(node)
    ]
    if not candidates:
        return cast(ColumnElement[datetime | None], sql_cast(null(), TIMESTAMPTZ))
    # NULLIF(LEAST(..., never), never): NULL when every candidate is NULL or past LATEST
    earliest = func.least(*candidates, _never(), type_=TIMESTAMPTZ)
    return cast(ColumnElement[datetime | None], func.nullif(earliest, _never(), type_=TIMESTAMPTZ))


def _never() -> ColumnElement[datetime]:
    """The first instant after :data:`LATEST` (not representable in Python)."""
    return sql_cast(literal("10000-01-01 00:00:00+00", Text), TIMESTAMPTZ)


def _after(at: ColumnElement[Any], delta: timedelta) -> ColumnElement[Any]:
    # Whole microseconds, never days: day arithmetic on timestamptz follows the session
    # timezone's DST rules, Python's UTC arithmetic does not.
    micros = (delta + TICK) // TICK
    return at + literal(micros, BigInteger) * literal_column("interval '1 microsecond'", Interval)


def _age_flip_sql(at: ColumnElement[Any], days: float, now: datetime) -> ColumnElement[Any]:
    # NULLIF(GREATEST(flip, now), now): the flip if it is after now, else NULL
    flip = _after(at, timedelta(days=days))
    return func.nullif(func.greatest(flip, instant(now), type_=TIMESTAMPTZ), instant(now))


def _leaf_flip_sql(node: Node, now: datetime, lookups: EventLookups) -> ColumnElement[Any]:
    if isinstance(node, TraitAge):
        return _age_flip_sql(trait_instant(node.trait), node.days, now)
    if isinstance(node, LastEventRule):
        at = profiles.c.last_seen_at if node.event is None else lookups.stat_last_at(node.event)
        return _age_flip_sql(at, node.days, now)
    if isinstance(node, FirstSeenRule):
        return _age_flip_sql(profiles.c.first_seen_at, node.days, now)
    assert isinstance(node, EventCountRule | EventValueRule) and node.within_days is not None
    after = window_cutoff(now, node.within_days)
    first_day = lookups.window_first_day(node.event, node.dimension, after)
    leaves = first_day + node.within_days
    return func.timezone("UTC", sql_cast(leaves, DateTime()), type_=TIMESTAMPTZ)
