"""Compile a rule into one SQL boolean over ``segmenter.profiles``, for sweeps and previews.

``select(profiles.c.customer_id).where(compile_sql(rule, now=now))`` evaluates every
profile in one statement; event conditions are correlated subqueries on
``event_stats`` / ``event_rollups``, membership an ``EXISTS`` on ``memberships``.
Every leaf yields TRUE or FALSE, never NULL, so ``NOT`` behaves as in Python.
Instants derived from ``now`` are bound parameters; results equal those of
:func:`..python_predicate.compile_predicate` for the same rows and ``now``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    DateTime,
    Double,
    Numeric,
    String,
    Table,
    Text,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from services.segmenter.models import Membership, Profile
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
from services.segmenter.rules.python_predicate import (
    as_utc,
    threshold_amount,
    utc_today,
)
from services.segmenter.rules.sql_functions import PARSE_INSTANT
from services.segmenter.rules.sql_lookups import CorrelatedLookups, EventLookups
from shared.rules import json_values

profiles = cast(Table, Profile.__table__)
memberships = cast(Table, Membership.__table__)

TIMESTAMPTZ = DateTime(timezone=True)

SqlBool = ColumnElement[bool]

COMPARE: dict[str, Callable[[Any, Any], Any]] = dict(json_values.COMPARE)
"""The comparison ops on SQL expressions: the Python predicates' operator functions,
which on SQLAlchemy expressions build the SQL comparison."""


def compile_sql(rule: Node, *, now: datetime, lookups: EventLookups | None = None) -> SqlBool:
    """A boolean over ``segmenter.profiles``: TRUE exactly for the profiles matching at ``now``.

    With :class:`..sql_lookups.SharedLookups`, select ``FROM lookups.source()``.
    """
    return _Compiler(now, lookups or CorrelatedLookups()).compile(rule)


# --- building blocks shared with next_flip_sql -------------------------------------------


def instant(value: datetime) -> ColumnElement[datetime]:
    """A bound ``timestamptz``."""
    return literal(value, TIMESTAMPTZ)


def jsonb(value: Any) -> ColumnElement[Any]:
    """A bound JSON value cast to ``jsonb``."""
    return sql_cast(literal(json.dumps(value, allow_nan=False), Text), JSONB)


def trait(key: str) -> ColumnElement[Any]:
    """``profiles.traits -> key`` (SQL NULL when missing)."""
    element: ColumnElement[Any] = profiles.c.traits[key]
    return element


def trait_text(key: str) -> ColumnElement[str]:
    """``profiles.traits ->> key``."""
    return cast(ColumnElement[str], profiles.c.traits[key].astext)


def trait_type(key: str) -> ColumnElement[str]:
    """``jsonb_typeof(traits -> key)``: NULL when missing, ``'null'`` for JSON null."""
    return func.jsonb_typeof(trait(key), type_=Text)


def trait_instant(key: str) -> ColumnElement[datetime]:
    """The trait parsed by ``segmenter.parse_instant`` when it is a string, else NULL."""
    text_value = case((trait_type(key) == "string", trait_text(key)))
    return _parse_instant(text_value)


def _parse_instant(text_value: ColumnElement[Any]) -> ColumnElement[datetime]:
    schema, name = PARSE_INSTANT.split(".")
    function = getattr(getattr(func, schema), name)
    return cast(ColumnElement[datetime], function(text_value, type_=TIMESTAMPTZ))


def window_cutoff(now: datetime, within_days: int) -> date:
    """Days after this date are inside a window of ``within_days`` UTC days ending today."""
    return utc_today(now) - timedelta(days=within_days)


def _true_or_false(condition: ColumnElement[Any]) -> SqlBool:
    """``coalesce(condition, false)``: unknown becomes false, as in Python."""
    return cast(SqlBool, func.coalesce(condition, false()))


# --- the compiler ------------------------------------------------------------------------


class _Compiler:
    def __init__(self, now: datetime, lookups: EventLookups) -> None:
        self.now = as_utc(now)
        self.today = utc_today(self.now)
        self.lookups = lookups

    def compile(self, rule: Node) -> SqlBool:
        method: Callable[[Any], SqlBool] = getattr(self, f"_{type(rule).__name__}")
        return method(rule)

    def _cutoff(self, days: float) -> ColumnElement[datetime]:
        return instant(self.now - timedelta(days=days))

    def _AllRule(self, rule: AllRule) -> SqlBool:
        return and_(*(self.compile(child) for child in rule.rules))

    def _AnyRule(self, rule: AnyRule) -> SqlBool:
        return or_(*(self.compile(child) for child in rule.rules))

    def _NotRule(self, rule: NotRule) -> SqlBool:
        return not_(self.compile(rule.rule))

    def _TraitEquals(self, rule: TraitEquals) -> SqlBool:
        equal = _true_or_false(trait(rule.trait) == jsonb(rule.value))
        return equal if rule.op == "eq" else not_(equal)

    def _TraitCompare(self, rule: TraitCompare) -> SqlBool:
        op = COMPARE[rule.op]
        if isinstance(rule.value, str):
            compared = and_(
                trait_type(rule.trait) == "string",
                op(trait_text(rule.trait).collate("C"), literal(rule.value, String)),
            )
        else:
            compared = and_(
                trait_type(rule.trait) == "number", op(trait(rule.trait), jsonb(rule.value))
            )
        return _true_or_false(compared)

    def _TraitIn(self, rule: TraitIn) -> SqlBool:
        value = trait(rule.trait)
        return _true_or_false(or_(*(value == jsonb(item) for item in rule.value)))

    def _TraitContains(self, rule: TraitContains) -> SqlBool:
        kind = trait_type(rule.trait)
        in_list = and_(kind == "array", trait(rule.trait).op("@>")(jsonb([rule.value])))
        if not isinstance(rule.value, str):
            return _true_or_false(in_list)
        in_text = and_(
            kind == "string", func.strpos(trait_text(rule.trait), literal(rule.value, Text)) > 0
        )
        return _true_or_false(or_(in_text, in_list))

    def _TraitExists(self, rule: TraitExists) -> SqlBool:
        present = _true_or_false(trait_type(rule.trait) != "null")
        return present if rule.value else not_(present)

    def _TraitAge(self, rule: TraitAge) -> SqlBool:
        return self._age(trait_instant(rule.trait), rule.days, rule.op == "older_than")

    def _age(self, at: ColumnElement[datetime], days: float, older: bool) -> SqlBool:
        cutoff = self._cutoff(days)
        return _true_or_false(at < cutoff if older else at >= cutoff)

    def _EventCountRule(self, rule: EventCountRule) -> SqlBool:
        count, _ = self._event_totals(rule)
        return cast(SqlBool, COMPARE[rule.op](func.coalesce(count, 0), rule.count))

    def _EventValueRule(self, rule: EventValueRule) -> SqlBool:
        count, value_sum = self._event_totals(rule)
        total = func.coalesce(value_sum, 0)
        op, threshold = COMPARE[rule.op], literal(threshold_amount(rule.value), Numeric)
        if rule.aggregate == "avg":  # no events: no average, so no match
            return _true_or_false(case((count > 0, op(total, threshold * count))))
        return _true_or_false(op(total, threshold))

    def _event_totals(
        self, rule: EventCountRule | EventValueRule
    ) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
        """The event's count and value sum, all time or in the rule's window (NULL: none)."""
        if rule.within_days is None:
            return self.lookups.stat_count(rule.event), self.lookups.stat_value_sum(rule.event)
        after = window_cutoff(self.now, rule.within_days)
        return (
            self.lookups.window_count(rule.event, rule.dimension, after),
            self.lookups.window_value_sum(rule.event, rule.dimension, after),
        )

    def _LastEventRule(self, rule: LastEventRule) -> SqlBool:
        if rule.event is None:
            return self._age(profiles.c.last_seen_at, rule.days, rule.older)
        return self._age(self.lookups.stat_last_at(rule.event), rule.days, rule.older)

    def _FirstSeenRule(self, rule: FirstSeenRule) -> SqlBool:
        return self._age(profiles.c.first_seen_at, rule.days, rule.older)

    def _SegmentRule(self, rule: SegmentRule) -> SqlBool:
        return (
            exists()
            .where(
                memberships.c.segment_id == rule.segment_id,
                memberships.c.customer_id == profiles.c.customer_id,
            )
            .correlate(profiles)
        )

    def _ScoreRule(self, rule: ScoreRule) -> SqlBool:
        column = profiles.c[rule.score]
        return _true_or_false(COMPARE[rule.op](column, literal(float(rule.value), Double)))

    def _LoyaltyTierRule(self, rule: LoyaltyTierRule) -> SqlBool:
        return _true_or_false(profiles.c.loyalty_tier.in_(list(rule.tiers)))

    def _RfmTierRule(self, rule: RfmTierRule) -> SqlBool:
        return _true_or_false(profiles.c.rfm_tier.in_(list(rule.tiers)))
