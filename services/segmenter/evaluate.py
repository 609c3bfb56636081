"""Evaluate every active segment for one customer on the event path (pure)."""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass, field
from datetime import datetime

from services.segmenter.catalog import SegmentCatalog
from services.segmenter.rules.ast import MAX_CHILDREN, AnyRule, Node, is_time_dependent_leaf, walk
from services.segmenter.rules.next_flip import FlipFunction, compile_next_flip
from services.segmenter.rules.snapshot import ProfileSnapshot


@dataclass(slots=True)
class Evaluation:
    entered: list[str] = field(default_factory=list)
    exited: list[str] = field(default_factory=list)
    #: the earliest instant a time-dependent segment may flip; None: no timer needed
    next_due: datetime | None = None


def evaluate_customer(
    catalog: SegmentCatalog, snapshot: ProfileSnapshot, now: datetime
) -> Evaluation:
    """Which segments the customer enters and leaves now, and when to look again.

    Segments are visited in dependency order, so a segment reading another
    segment's membership sees it as of this evaluation.
    """
    result = Evaluation()
    members = set(snapshot.memberships)
    current = snapshot
    for segment in catalog.segments:
        if segment.depends_on and frozenset(members) != current.memberships:
            current = dataclasses.replace(current, memberships=frozenset(members))
        matched = segment.predicate(current, now)
        was_member = segment.id in members
        if matched and not was_member:
            members.add(segment.id)
            result.entered.append(segment.id)
        elif was_member and not matched:
            members.discard(segment.id)
            result.exited.append(segment.id)
    for flip in _next_flips(catalog):
        due = flip(snapshot, now)
        if due is not None and (result.next_due is None or due < result.next_due):
            result.next_due = due
    return result


_FLIPS: weakref.WeakKeyDictionary[SegmentCatalog, tuple[FlipFunction, ...]] = (
    weakref.WeakKeyDictionary()
)


def _next_flips(catalog: SegmentCatalog) -> tuple[FlipFunction, ...]:
    """The catalog's next-flip functions, compiled once per catalog.

    A time-dependent segment's next flip is the earliest of its time-dependent
    leaves' (see :mod:`.rules.next_flip`), and no leaf reads memberships; so the
    customer's timer — the earliest flip of every time-dependent segment — is the
    earliest flip of the distinct time-dependent leaves of all segments, computed
    once each rather than once per segment that contains them.
    """
    flips = _FLIPS.get(catalog)
    if flips is None:
        leaves: dict[object, Node] = {}
        for segment in catalog.segments:
            if segment.time_dependent:
                for node in walk(segment.rule):
                    if is_time_dependent_leaf(node):
                        leaves.setdefault(_key(node), node)
        unique = list(leaves.values())
        flips = tuple(
            compile_next_flip(AnyRule(rules=tuple(unique[i : i + MAX_CHILDREN])))
            for i in range(0, len(unique), MAX_CHILDREN)
        )
        _FLIPS[catalog] = flips
    return flips


def _key(node: Node) -> object:
    try:
        hash(node)
    except TypeError:
        return id(node)
    return node
