"""The journeys as the event path reads them: an in-memory index, reloaded by a stamp.

Most consumed events trigger nothing and concern no run. :class:`Catalog` answers in
a dict lookup which journeys an event name or a segment starts, and whether an
event name is read at all (a trigger, a goal, a wait, an engagement); an event no
journey reads is dropped before any database work. Published versions are
immutable, so every version a run may be on is kept here too.

:class:`CatalogCache` reloads it when ``(count, max(updated_at))`` of the journeys
or the winners table changes (at most every ``poll_s``; this process's own edits
invalidate it at once), through :class:`shared.db.stamped.StampedCache`.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.journey.definition import EventTrigger, JourneyDefinition, SegmentTrigger
from services.journey.repository import journeys, versions, winners
from shared.db.stamped import StampedCache


@dataclass(frozen=True, slots=True)
class LiveJourney:
    id: str
    status: str
    #: the version new entrants take
    version: int
    definition: JourneyDefinition


@dataclass(frozen=True)
class Catalog:
    #: journeys that take new entrants (status active), by id
    active: dict[str, LiveJourney] = field(default_factory=dict)
    #: archived journeys: a run of one still in flight (entered by a replica whose
    #: catalog was a moment old) exits at its next input or timer
    archived: frozenset[str] = frozenset()
    #: every published definition, by (journey id, version)
    definitions: dict[tuple[str, int], JourneyDefinition] = field(default_factory=dict)
    #: promoted winners: (journey id, version) -> step id -> variant
    winners: dict[tuple[str, int], dict[str, str]] = field(default_factory=dict)
    by_event: dict[str, tuple[LiveJourney, ...]] = field(default_factory=dict)
    by_segment: dict[str, tuple[LiveJourney, ...]] = field(default_factory=dict)
    #: every event name some trigger, goal or wait of a live version reads
    read_events: frozenset[str] = frozenset()
    #: segments whose changes a run reads (triggers, audiences runs exit on leaving):
    #: the changes of other segments only update the memberships projection
    read_segments: frozenset[str] = frozenset()
    #: (journey, version, send step) whose dispatch outcomes a run reads (a failure
    #: branch, a wait for engagement): other outcomes are dropped unread
    read_outcomes: frozenset[tuple[str, int, str]] = frozenset()

    @classmethod
    def build(
        cls,
        journey_rows: list[Any],
        version_rows: list[Any],
        winner_rows: list[Any],
    ) -> Catalog:
        definitions = {
            (row.journey_id, row.version): JourneyDefinition.model_validate(row.definition)
            for row in version_rows
        }
        active: dict[str, LiveJourney] = {}
        live_ids = set()
        for row in journey_rows:
            if row.status in ("active", "paused"):
                live_ids.add(row.id)
            if row.status == "active" and row.version is not None:
                definition = definitions[(row.id, row.version)]
                active[row.id] = LiveJourney(row.id, row.status, row.version, definition)
        by_event: dict[str, list[LiveJourney]] = {}
        by_segment: dict[str, list[LiveJourney]] = {}
        for journey in active.values():
            for trigger in journey.definition.triggers:
                if isinstance(trigger, EventTrigger):
                    by_event.setdefault(trigger.event, []).append(journey)
                elif isinstance(trigger, SegmentTrigger):
                    by_segment.setdefault(trigger.segment_id, []).append(journey)
        read: set[str] = set()
        read_segments: set[str] = set(by_segment)
        read_outcomes: set[tuple[str, int, str]] = set()
        for (journey_id, version), definition in definitions.items():
            if journey_id not in live_ids:
                continue
            read |= definition.event_names()  # runs of paused journeys go on
            if definition.exit_on_audience_leave and definition.audience_segment:
                read_segments.add(definition.audience_segment)
            read_outcomes |= {(journey_id, version, s) for s in definition.outcome_steps()}
        found_winners: dict[tuple[str, int], dict[str, str]] = {}
        for row in winner_rows:
            found_winners.setdefault((row.journey_id, row.journey_version), {})[row.step_id] = (
                row.variant
            )
        return cls(
            active=active,
            archived=frozenset(row.id for row in journey_rows if row.status == "archived"),
            definitions=definitions,
            winners=found_winners,
            by_event={k: _unique(v) for k, v in by_event.items()},
            by_segment={k: _unique(v) for k, v in by_segment.items()},
            read_events=frozenset(read),
            read_segments=frozenset(read_segments),
            read_outcomes=frozenset(read_outcomes),
        )


def _unique(items: list[LiveJourney]) -> tuple[LiveJourney, ...]:
    return tuple({j.id: j for j in items}.values())


async def load_catalog(conn: AsyncConnection) -> Catalog:
    return Catalog.build(
        list(await conn.execute(select(journeys))),
        list(await conn.execute(select(versions))),
        list(await conn.execute(select(winners))),
    )


async def catalog_stamp(conn: AsyncConnection) -> Hashable:
    row = (
        await conn.execute(
            select(
                select(func.count()).select_from(journeys).scalar_subquery(),
                select(func.max(journeys.c.updated_at)).scalar_subquery(),
                select(func.count()).select_from(winners).scalar_subquery(),
                select(func.count()).select_from(versions).scalar_subquery(),
            )
        )
    ).one()
    return tuple(row)


class CatalogCache(StampedCache[Catalog]):
    def __init__(self, engine: AsyncEngine, *, poll_s: float = 1.0) -> None:
        super().__init__(
            engine, stamp=catalog_stamp, load=load_catalog, initial=Catalog(), poll_s=poll_s
        )
