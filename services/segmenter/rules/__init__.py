"""The segment rule language: parse, analyse, and compile to Python and SQL predicates.

See ``docs/segments.md``. One definition compiles to a Python predicate for the
event path (:func:`compile_predicate`) and a SQL predicate for sweeps and previews
(:func:`compile_sql`); the two agree. :func:`next_flip` / :func:`next_flip_sql`
say when a time-dependent definition must be re-evaluated.
"""

from __future__ import annotations

from services.segmenter.rules.ast import (
    MAX_DEPTH,
    AllRule,
    AnyRule,
    EventCountRule,
    EventValueRule,
    FirstSeenRule,
    LastEventRule,
    LoyaltyTierRule,
    Node,
    NotRule,
    PropertyFilter,
    RfmTierRule,
    Rule,
    ScoreRule,
    SegmentDefinition,
    SegmentRule,
    TraitAge,
    TraitCompare,
    TraitContains,
    TraitEquals,
    TraitExists,
    TraitIn,
    dimension_key,
    dump_rule,
    is_time_dependent,
    max_window_days,
    parse_rule,
    parse_rule_json,
    referenced_dimensions,
    referenced_segments,
    referenced_statistics,
    walk,
)
from services.segmenter.rules.next_flip import compile_next_flip, next_flip, next_flip_sql
from services.segmenter.rules.python_predicate import Predicate, compile_predicate, parse_instant
from services.segmenter.rules.snapshot import EventStatView, ProfileSnapshot
from services.segmenter.rules.sql_functions import SQL_FUNCTIONS_DDL, SQL_FUNCTIONS_DROP
from services.segmenter.rules.sql_predicate import compile_sql

__all__ = [
    "MAX_DEPTH",
    "SQL_FUNCTIONS_DDL",
    "SQL_FUNCTIONS_DROP",
    "AllRule",
    "AnyRule",
    "EventCountRule",
    "EventStatView",
    "EventValueRule",
    "FirstSeenRule",
    "LastEventRule",
    "Node",
    "NotRule",
    "Predicate",
    "ProfileSnapshot",
    "PropertyFilter",
    "LoyaltyTierRule",
    "RfmTierRule",
    "Rule",
    "ScoreRule",
    "SegmentDefinition",
    "SegmentRule",
    "TraitAge",
    "TraitCompare",
    "TraitContains",
    "TraitEquals",
    "TraitExists",
    "TraitIn",
    "compile_next_flip",
    "compile_predicate",
    "compile_sql",
    "dimension_key",
    "dump_rule",
    "is_time_dependent",
    "max_window_days",
    "next_flip",
    "next_flip_sql",
    "parse_instant",
    "parse_rule",
    "parse_rule_json",
    "referenced_dimensions",
    "referenced_statistics",
    "referenced_segments",
    "walk",
]
