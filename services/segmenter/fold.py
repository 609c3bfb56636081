"""Fold a batch of customer events into per-customer working state (pure, no I/O).

Every merge here is commutative, so the order of events within and across
batches does not change the result: traits are last-write-wins per trait by
event timestamp (not arrival), first/last seen are min/max, counts and sums add.
That is also what makes alias merges order-free.

What counts as activity (``last_seen_at``, event statistics): track, page
("Page Viewed") and screen ("Screen Viewed") calls. identify and group calls
create the profile and set traits (a ``null`` trait removes it); group sets the
``group_id`` trait. ``context.timezone`` / ``context.locale`` are kept too,
last-write-wins like traits.

Rollup days are UTC days: an event at ``22:00-05:00`` counts on the next UTC day,
whatever offset the client sent (ingest keeps it when there is no ``sentAt``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from services.segmenter.rules.ast import dimension_key
from shared.events.base import Position
from shared.events.customer_events import CustomerEvent, EventType
from shared.events.engagement import NOT_ACTIVITY

PAGE_EVENT = "Page Viewed"
SCREEN_EVENT = "Screen Viewed"
_TZ_KEY = "$timezone"
#: asyncpg writes exactly datetime.min / max (UTC) as PostgreSQL's -infinity / infinity
#: and reads those back as *naive* datetime.min / max, which later events then fail to
#: compare with; an event time is kept one microsecond inside them, aware end to end
_EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(microseconds=1)
_LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(microseconds=1)
_LOCALE_KEY = "$locale"


@dataclass
class StatDelta:
    count: int = 0
    value_sum: float = 0.0
    first_at: datetime | None = None
    last_at: datetime | None = None

    def add(self, at: datetime, value: float) -> None:
        self.count += 1
        self.value_sum += value
        self.first_at = at if self.first_at is None else min(self.first_at, at)
        self.last_at = at if self.last_at is None else max(self.last_at, at)


@dataclass
class WorkingProfile:
    """A customer's profile as loaded, plus what this batch did to it."""

    customer_id: str
    first_seen_at: datetime
    last_seen_at: datetime
    traits: dict[str, Any] = field(default_factory=dict)
    #: the stored ``trait_times`` as JSON text, read only when a trait is set: most
    #: batches only track events, and most profiles keep their traits
    stored_trait_times: str = "{}"
    timezone: str | None = None
    locale: str | None = None
    version: int = 0
    stored: bool = False
    #: the profile's published fields (traits, timezone, locale) changed
    changed: bool = False
    #: traits, trait times, timezone or locale were written (a newer timestamp for the
    #: same value too): the upsert writes them only then
    traits_written: bool = False
    stats: dict[str, StatDelta] = field(default_factory=dict)
    rollups: dict[tuple[str, str, date], list[float]] = field(default_factory=dict)
    _trait_times: dict[str, str] | None = field(default=None, repr=False, compare=False)
    #: the ``customer.events`` position folded into it so far (stored; set by a batch)
    folded: Position | None = None

    @property
    def trait_times(self) -> dict[str, str]:
        """When each trait was set (ISO timestamps of the setting events)."""
        if self._trait_times is None:
            self._trait_times = dict(orjson.loads(self.stored_trait_times))
        return self._trait_times

    def touch(self, at: datetime, *, activity: bool) -> None:
        if at < self.first_seen_at:
            self.first_seen_at = at
        if activity and at > self.last_seen_at:
            self.last_seen_at = at

    def set_trait(self, name: str, value: Any, at: datetime) -> None:
        stamp = at.isoformat()
        known = self.trait_times.get(name)
        if known is not None and known > stamp:
            return
        if known == stamp and self.traits.get(name) == value:
            return
        self.trait_times[name] = stamp
        self.traits_written = True
        if name == _TZ_KEY:
            self.changed |= self.timezone != value
            self.timezone = value
        elif name == _LOCALE_KEY:
            self.changed |= self.locale != value
            self.locale = value
        elif value is None:
            self.changed |= name in self.traits
            self.traits.pop(name, None)
        else:
            self.changed |= self.traits.get(name) != value
            self.traits[name] = value


def storable_time(at: datetime) -> datetime:
    """``at``, or the nearest instant PostgreSQL and asyncpg keep finite and aware."""
    return _LATEST if at > _LATEST else _EARLIEST if at < _EARLIEST else at


def new_profile(customer_id: str, at: datetime) -> WorkingProfile:
    at = storable_time(at)
    return WorkingProfile(
        customer_id, first_seen_at=at, last_seen_at=at, changed=True, traits_written=True
    )


def event_name(event: CustomerEvent) -> str | None:
    if event.type is EventType.TRACK:
        return event.event
    if event.type is EventType.PAGE:
        return PAGE_EVENT
    if event.type is EventType.SCREEN:
        return SCREEN_EVENT
    return None


def event_value(properties: Mapping[str, Any]) -> float:
    """``revenue``, else ``value``, when it is a number; else 0."""
    for name in ("revenue", "value"):
        value = properties.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return 0.0


class TrackedDimensions:
    """The property filters active segments use: which dimension rows to keep per event."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.pairs = frozenset(pairs)
        by_event: dict[str, set[str]] = defaultdict(set)
        for event, dimension in self.pairs:
            if dimension:
                by_event[event].add(dimension.split("=", 1)[0])
        self._properties = {event: tuple(sorted(props)) for event, props in by_event.items()}

    def dimensions_of(self, name: str, properties: Mapping[str, Any]) -> list[str]:
        found = [""]
        for prop in self._properties.get(name, ()):
            if prop in properties:
                key = dimension_key(prop, properties[prop])
                if (name, key) in self.pairs:
                    found.append(key)
        return found


def apply_event(profile: WorkingProfile, event: CustomerEvent, tracked: TrackedDimensions) -> None:
    """Fold one event into the customer's working state."""
    at = storable_time(event.timestamp)
    name = event_name(event)
    # what the platform says about a customer (``Coupon Issued``) is counted, but does
    # not make them active: a win-back offer must not end the inactivity that sent it
    profile.touch(at, activity=name is not None and name not in NOT_ACTIVITY)
    if event.type is EventType.IDENTIFY:
        for trait, value in event.traits.items():
            profile.set_trait(trait, value, at)
    if event.type is EventType.GROUP and event.group_id is not None:
        profile.set_trait("group_id", event.group_id, at)
    timezone = event.context.get("timezone")
    if isinstance(timezone, str) and timezone:
        profile.set_trait(_TZ_KEY, timezone, at)
    locale = event.context.get("locale")
    if isinstance(locale, str) and locale:
        profile.set_trait(_LOCALE_KEY, locale, at)
    if name is None:
        return
    value = event_value(event.properties)
    stat = profile.stats.get(name)
    if stat is None:  # (not setdefault: it would build a StatDelta for every event)
        stat = profile.stats[name] = StatDelta()
    stat.add(at, value)
    day = at.astimezone(UTC).date()  # the UTC day, whatever offset the client sent
    for dimension in tracked.dimensions_of(name, event.properties):
        totals = profile.rollups.setdefault((name, dimension, day), [0, 0.0])
        totals[0] += 1
        totals[1] += value


def merge_profiles(into: WorkingProfile, other: WorkingProfile) -> None:
    """Fold ``other`` (an alias's anonymous profile, as stored) into ``into``."""
    into.first_seen_at = min(into.first_seen_at, other.first_seen_at)
    into.last_seen_at = max(into.last_seen_at, other.last_seen_at)
    for name, stamp in other.trait_times.items():
        value = {_TZ_KEY: other.timezone, _LOCALE_KEY: other.locale}.get(
            name, other.traits.get(name)
        )
        into.set_trait(name, value, datetime.fromisoformat(stamp))
    for trait, value in other.traits.items():
        if trait not in other.trait_times:
            into.set_trait(trait, value, other.first_seen_at)
    into.changed = True
    into.traits_written = True
