"""The active segments, compiled once, in dependency order.

A segment whose rule reads another segment's membership comes after it, so one
pass over the list evaluates a customer completely. Cycles are refused when a
segment is saved (:func:`dependency_order` raises :class:`SegmentCycle`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from graphlib import CycleError, TopologicalSorter
from typing import Any

from services.segmenter.fold import TrackedDimensions
from services.segmenter.rules.ast import (
    LoyaltyTierRule,
    Node,
    RfmTierRule,
    ScoreRule,
    is_time_dependent,
    max_window_days,
    parse_rule,
    referenced_dimensions,
    referenced_segments,
    referenced_statistics,
    walk,
)
from services.segmenter.rules.python_predicate import compile_predicate
from services.segmenter.rules.snapshot import ProfileSnapshot

Predicate = Callable[[ProfileSnapshot, datetime], bool]


class SegmentCycle(ValueError):
    def __init__(self, cycle: list[str]) -> None:
        super().__init__(f"segments would depend on each other in a cycle: {' -> '.join(cycle)}")
        self.cycle = cycle


@dataclass(frozen=True, slots=True)
class ActiveSegment:
    id: str
    version: int
    rule: Node
    predicate: Predicate
    depends_on: frozenset[str]
    #: time alone can change it (itself, or through a segment it reads)
    time_dependent: bool
    reads_scores: bool

    @classmethod
    def compile(cls, segment_id: str, version: int, definition: Mapping[str, Any]) -> ActiveSegment:
        rule = parse_rule(definition)
        return cls(
            id=segment_id,
            version=version,
            rule=rule,
            predicate=compile_predicate(rule),
            depends_on=referenced_segments(rule),
            time_dependent=is_time_dependent(rule),
            reads_scores=any(
                isinstance(n, ScoreRule | RfmTierRule | LoyaltyTierRule) for n in walk(rule)
            ),
        )


def dependency_order(segments: Iterable[ActiveSegment]) -> list[ActiveSegment]:
    """Segments sorted so each comes after the segments it reads; raise on a cycle."""
    by_id = {s.id: s for s in segments}
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for segment in sorted(by_id.values(), key=lambda s: s.id):
        sorter.add(segment.id, *sorted(d for d in segment.depends_on if d in by_id))
    try:
        order = list(sorter.static_order())
    except CycleError as exc:
        raise SegmentCycle(list(exc.args[1])) from None
    return [by_id[segment_id] for segment_id in order]


class SegmentCatalog:
    """What the event path needs to know about the active segments."""

    def __init__(self, segments: Iterable[ActiveSegment]) -> None:
        ordered = dependency_order(segments)
        time_dependent = {s.id for s in ordered if s.time_dependent}
        # a segment reading a time-dependent segment is time-dependent too
        for segment in ordered:
            if segment.depends_on & time_dependent:
                time_dependent.add(segment.id)
        self.segments = [
            s if (s.id in time_dependent) == s.time_dependent else _with_time(s, True)
            for s in ordered
        ]
        self.by_id = {s.id: s for s in self.segments}
        self.tracked = TrackedDimensions(
            pair for s in self.segments for pair in referenced_dimensions(s.rule)
        )
        windows = [w for s in self.segments if (w := max_window_days(s.rule)) is not None]
        self.rollup_days = max(windows, default=0)
        self.rollup_events = frozenset(event for event, _ in self.tracked.pairs)
        #: the event names whose ``event_stats`` rows the predicates read
        self.stat_events = frozenset(
            event for s in self.segments for event in referenced_statistics(s.rule)
        )

    @property
    def time_dependent(self) -> list[ActiveSegment]:
        return [s for s in self.segments if s.time_dependent]


def _with_time(segment: ActiveSegment, time_dependent: bool) -> ActiveSegment:
    return ActiveSegment(
        segment.id,
        segment.version,
        segment.rule,
        segment.predicate,
        segment.depends_on,
        time_dependent,
        segment.reads_scores,
    )
