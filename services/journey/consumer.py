"""The journey's consumer: customer events, segment changes, profiles, dispatch outcomes
and experiment decisions in, runs moved and messages out.

A batch of all five topics is one database transaction:

1. keep only what some journey reads: a ``track`` event whose name no trigger, goal
   or wait of a live journey names is dropped here, before any database work (the
   common case; :class:`~services.journey.catalog.Catalog` answers from memory);
   so is an outcome of a dispatch no run waits on (no failure branch, no wait for
   engagement); a change of a segment no trigger or audience exit reads only
   updates the memberships projection (unclaimed: replayed in order, it ends in
   the same state); a batch of only skipped events touches no database at all;
2. claim the message ids of what is left (a redelivered message is skipped);
3. update the projections: ``profiles`` (highest version wins; an erased customer's
   runs exit, then all their runs are scrubbed: see ``repository.erase_runs``; the
   inputs of an erased customer, now or later, are dropped), ``segment.changes``
   (memberships), split winners; apply the id merges ``profiles`` announce and
   redirect inputs of merged-away ids (:mod:`services.journey.merges`);
4. lock the runs in flight of the batch's customers and, for each customer, apply
   their inputs one at a time in the order consumed: each run in flight gets the
   input, then each active journey it triggers starts a run if its entry rule and
   audience allow;
5. write runs, timers, step counts and outbox messages, and watch the dispatch
   requests emitted; every outcome, read by a run or not, settles (final) or postpones
   (deferred) the watch of its dispatch (:mod:`services.journey.watch`).

The runner commits the offsets only after this transaction committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.journey import repository as repo
from services.journey.catalog import Catalog, CatalogCache, LiveJourney
from services.journey.machine import (
    EntryHistory,
    EventInput,
    Facts,
    Input,
    OutcomeInput,
    SegmentInput,
    Stop,
    enter,
    may_enter,
    run_id_for,
    trigger_matches,
)
from services.journey.merges import apply_merges, lock_and_resolve
from services.journey.metrics import ENTRIES_REFUSED, EVENTS_SKIPPED, INPUTS_DUPLICATE
from services.journey.models import processed_messages, profiles
from services.journey.processing import WATCH_AFTER, UnknownVersion, Work, load_facts
from services.journey.watch import postpone, settle
from shared.clock import Clock, utc_now
from shared.db.claims import claim_messages
from shared.db.profile_projection import apply_profile_updates, erased_ids
from shared.db.transient import is_transient_db_error
from shared.events import (
    customer_events,
    dispatch_outcomes,
    experiment_decisions,
    registry,
    segment_changes,
)
from shared.events import profiles as profiles_topic
from shared.events.base import Position
from shared.events.customer_events import CustomerEvent, EventType
from shared.events.dispatch_outcomes import DispatchOutcome
from shared.events.experiment_decisions import ExperimentDecision, Verdict
from shared.events.journey_runs import ExitReason
from shared.events.profiles import ProfileUpdate, is_erasure, merges_of
from shared.events.segment_changes import Change, SegmentChange
from shared.kafka.consumer import Decoder, Record

log = logging.getLogger(__name__)

TOPICS = (
    customer_events.TOPIC,
    segment_changes.TOPIC,
    profiles_topic.TOPIC,
    dispatch_outcomes.TOPIC,
    experiment_decisions.TOPIC,
)

DECODERS: dict[str, Decoder[Any]] = registry.decoders(
    registry.CUSTOMER_EVENTS,
    registry.SEGMENT_CHANGES,
    registry.PROFILES,
    registry.DISPATCH_OUTCOMES,
    registry.EXPERIMENT_DECISIONS,
)


def is_transient(exc: BaseException) -> bool:
    """A transient database error, or a run on a version this process has not loaded
    yet (published by another replica a moment ago): retry the batch."""
    return isinstance(exc, UnknownVersion) or is_transient_db_error(exc)


@dataclass(frozen=True, slots=True)
class _Item:
    """One input of a customer, with the id it is claimed under."""

    claim: str
    customer_id: str
    value: CustomerEvent | SegmentChange | DispatchOutcome
    #: its ``customer.events`` position (an event's own, a change's folded one)
    position: Position | None = None


@dataclass(kw_only=True, eq=False)
class JourneyBatchHandler:
    """Applies batches of the five topics; see the module docstring."""

    engine: AsyncEngine
    catalogs: CatalogCache
    clock: Clock = utc_now
    on_commit: Callable[[], None] = lambda: None
    watch_after: timedelta = WATCH_AFTER

    async def __call__(self, records: Sequence[Record[Any]]) -> None:
        catalog = await self.catalogs.current()
        items: list[_Item] = []
        updates: list[ProfileUpdate] = []
        decisions: list[ExperimentDecision] = []
        memberships: list[SegmentChange] = []
        watched = _Watched()
        skipped = 0
        for record in records:
            value = record.value
            if isinstance(value, CustomerEvent):
                if value.type is EventType.TRACK and value.event in catalog.read_events:
                    at = Position(partition=record.partition, offset=record.offset)
                    items.append(_Item(f"e:{value.message_id}", value.customer_id, value, at))
                else:
                    skipped += 1
            elif isinstance(value, SegmentChange):
                if value.segment_id in catalog.read_segments:
                    items.append(
                        _Item(f"s:{value.change_id}", value.customer_id, value, value.position)
                    )
                else:  # only the projection: replaying it in order ends in the same state
                    memberships.append(value)
            elif isinstance(value, DispatchOutcome):
                watched.add(value)
                if (
                    value.journey_id,
                    value.journey_version,
                    value.step_id,
                ) in catalog.read_outcomes:
                    items.append(_Item(f"o:{value.outcome_id}", value.customer_id, value))
                else:
                    skipped += 1
            elif isinstance(value, ProfileUpdate):
                updates.append(value)
            elif isinstance(value, ExperimentDecision):
                decisions.append(value)
        if skipped:
            EVENTS_SKIPPED.inc(skipped)
        if not (items or updates or decisions or memberships or watched):
            return
        try:
            winners_changed = await self._apply(
                catalog, items, updates, decisions, memberships, watched
            )
        except UnknownVersion:
            self.catalogs.invalidate()  # the retry reloads the catalog first
            raise
        if winners_changed:
            self.catalogs.invalidate()
        self.on_commit()

    async def _apply(
        self,
        catalog: Catalog,
        items: list[_Item],
        updates: list[ProfileUpdate],
        decisions: list[ExperimentDecision],
        memberships: list[SegmentChange],
        watched: _Watched,
    ) -> bool:
        now = self.clock()
        async with self.engine.begin() as conn:
            await settle(conn, dispatch_ids=watched.settled)
            await postpone(conn, until=watched.deferred, first=self.watch_after)
            claims = [item.claim for item in items] + [f"d:{d.decision_id}" for d in decisions]
            fresh = await claim_messages(conn, table=processed_messages, message_ids=claims)
            if len(fresh) < len(claims):
                INPUTS_DUPLICATE.inc(len(claims) - len(fresh))
            items = [item for item in items if item.claim in fresh]
            decisions = [d for d in decisions if f"d:{d.decision_id}" in fresh]

            erased: frozenset[str] = frozenset()
            pairs = merges_of(updates)
            if updates:
                erased = (await apply_profile_updates(conn, table=profiles, updates=updates)).erased
                # a tombstone naming ``mergedInto`` is a merge (its runs move), not an erasure
                erased -= {u.customer_id for u in updates if not is_erasure(u)}
                await repo.forget_memberships(conn, customer_ids=erased)
            memberships = [m for m in memberships if m.customer_id not in erased]
            # routed changes and the others are of different segments: each pair's
            # changes stay in the order consumed
            changes = [i.value for i in items if isinstance(i.value, SegmentChange)]
            changes += memberships
            if changes:
                await repo.apply_memberships(
                    conn,
                    changes=[
                        (c.customer_id, c.segment_id, c.change is Change.ENTERED, c.at)
                        for c in changes
                    ],
                )
            winners = [
                (d.journey_id, d.journey_version, d.step_id, d.winner, d.decision_id, d.decided_at)
                for d in decisions
                if d.verdict is Verdict.WINNER and d.winner
            ]
            await repo.save_winners(conn, decisions=winners)

            work = Work(catalog, now, self.watch_after)
            if items or pairs:
                # merges first: the batch's inputs then find the runs under their new id
                resolved = await lock_and_resolve(
                    conn, ids={i.customer_id for i in items} | {i for p in pairs for i in p}
                )
                await apply_merges(conn, work, pairs=pairs, resolved=resolved, now=now)
                items = [
                    replace(i, customer_id=resolved[i.customer_id])
                    if i.customer_id in resolved
                    else i
                    for i in items
                ]
            # nothing more about an erased customer (this batch's or an earlier one's);
            # after the merges: a merged-away id's tombstone is not an erasure, and its
            # inputs now carry the id it was merged into
            gone = await erased_ids(
                conn,
                table=profiles,
                ids={i.customer_id for i in items} | {m.customer_id for m in memberships},
            )
            if gone:
                items = [i for i in items if i.customer_id not in gone]
            by_customer: dict[str, list[_Item]] = {}
            for item in items:
                by_customer.setdefault(item.customer_id, []).append(item)
            customers = set(by_customer) | erased
            if customers:
                await self._runs(conn, catalog, work, by_customer, erased)
            await work.write(conn)
            # once stopped (their exits written): every run of theirs, done or not
            await repo.erase_runs(conn, customer_ids=erased)
        return bool(winners)

    async def _runs(
        self,
        conn: Any,
        catalog: Catalog,
        work: Work,
        by_customer: dict[str, list[_Item]],
        erased: frozenset[str],
    ) -> None:
        customers = set(by_customer) | erased
        active = await repo.lock_active_runs(conn, customer_ids=customers)
        for customer_id in erased:
            for run in active.pop(customer_id, []):
                stopped = work.apply(run, Stop(ExitReason.ERASED), Facts())
                stopped.trigger = {}  # the trigger's properties may hold personal data
            by_customer.pop(customer_id, None)  # nothing more about an erased customer
        starts = {
            customer_id: [_starts(catalog, item) for item in customer_items]
            for customer_id, customer_items in by_customer.items()
        }
        entering = {c for c, lists in starts.items() if any(lists)}
        if not active and not entering:
            return
        history = await repo.entry_history(
            conn,
            customer_ids=entering,
            journey_ids={j.id for lists in starts.values() for js in lists for j in js},
        )
        facts = await load_facts(conn, catalog, set(active) | entering)
        for customer_id, customer_items in by_customer.items():
            runs = active.get(customer_id, [])
            customer_facts = facts.get(customer_id, Facts())
            for item, journeys in zip(customer_items, starts[customer_id], strict=True):
                given = _input(item)
                runs = [
                    work.apply(run, given, customer_facts) if run.status == "active" else run
                    for run in runs
                ]
                for journey in journeys:
                    run = self._enter(work, journey, item, customer_facts, history)
                    if run is not None:
                        runs.append(run)

    def _enter(
        self,
        work: Work,
        journey: LiveJourney,
        item: _Item,
        facts: Facts,
        history: dict[tuple[str, str], tuple[datetime, bool]],
    ) -> Any:
        definition = journey.definition
        key = (journey.id, item.customer_id)
        last = history.get(key)
        past = EntryHistory(*last) if last is not None else EntryHistory()
        if not may_enter(definition.entry, past, work.now):
            ENTRIES_REFUSED.labels("entry_rule").inc()
            return None
        if definition.audience_segment and definition.audience_segment not in facts.memberships:
            ENTRIES_REFUSED.labels("audience").inc()
            return None
        value = item.value
        if isinstance(value, CustomerEvent):
            trigger_event, trigger = value.event, dict(value.properties)
        else:
            assert isinstance(value, SegmentChange)
            trigger_event = None
            trigger = {"segmentId": value.segment_id, "change": value.change.value}
        transition = enter(
            definition,
            journey_id=journey.id,
            version=journey.version,
            customer_id=item.customer_id,
            run_id=run_id_for(
                journey_id=journey.id, customer_id=item.customer_id, cause_id=item.claim
            ),
            trigger_event=trigger_event,
            trigger=trigger,
            now=work.now,
            facts=work.facts_for(facts, journey.id, journey.version),
            position=item.position,
        )
        run = work.took(transition, new=True)
        history[key] = (work.now, run.on_steps)
        return run


@dataclass(slots=True)
class _Watched:
    """What a batch's outcomes tell the watch of dispatch requests (every outcome,
    whether a run reads it or not; idempotent, so a redelivery changes nothing)."""

    settled: list[str] = field(default_factory=list)
    deferred: list[tuple[str, datetime]] = field(default_factory=list)

    def add(self, outcome: DispatchOutcome) -> None:
        if outcome.status.is_final_decision:
            self.settled.append(outcome.dispatch_id)
        elif outcome.deferred_until is not None:
            self.deferred.append((outcome.dispatch_id, outcome.deferred_until))

    def __bool__(self) -> bool:
        return bool(self.settled or self.deferred)


def _starts(catalog: Catalog, item: _Item) -> tuple[LiveJourney, ...]:
    """The active journeys this input triggers."""
    value = item.value
    if isinstance(value, CustomerEvent):
        candidates = catalog.by_event.get(value.event or "", ())
        return tuple(
            j
            for j in candidates
            if trigger_matches(j.definition, event=value.event, properties=value.properties)
        )
    if isinstance(value, SegmentChange):
        candidates = catalog.by_segment.get(value.segment_id, ())
        entered = value.change is Change.ENTERED
        return tuple(
            j
            for j in candidates
            if trigger_matches(j.definition, segment_id=value.segment_id, entered=entered)
        )
    return ()


def _input(item: _Item) -> Input:
    value = item.value
    if isinstance(value, CustomerEvent):
        return EventInput(value.event or "", value.properties, value.timestamp, item.position)
    if isinstance(value, SegmentChange):
        return SegmentInput(value.segment_id, value.change is Change.ENTERED, item.position)
    return OutcomeInput(value.dispatch_id, value.status, value.reason)
