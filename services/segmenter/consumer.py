"""The segmenter's consumer: customer events in, profiles and membership changes out.

One batch is one database transaction:

1. claim the batch's messageIds (a redelivered message is skipped: idempotent),
   and drop the events of suppressed customer ids;
2. merge alias calls, and identify calls carrying both an anonymousId and a
   userId (the anonymous profile, stats and rollups move to the known id; the
   anonymous id's memberships end; the known id's ``profiles`` message announces
   the merge in ``mergedFrom``, the old id's tombstone names ``mergedInto``);
3. fold the events into each customer's profile (traits last-write-wins by
   event timestamp), add event statistics and daily rollups;
4. evaluate every active segment for the affected customers in Python, write
   membership changes (each emitted once: ``RETURNING`` tells what really
   changed), the next timer of each customer, and the outbox messages
   (``segment.changes``, ``profiles``).

Every profile the batch touched is published, changed or not, stamped with ``folded``:
the position in ``customer.events`` of the batch's last record of that customer; the
membership changes the batch made carry the same position. That is what lets the
journey and the dispatcher tell whether their copy of a profile has seen a given event
(see "Freshness" in docs/architecture.md).

The runner commits the offsets only after this transaction committed.

An alias is keyed by the known id, the anonymous id's events by the anonymous id:
another replica may apply them at the same time. The merge reserves both profile
rows first (:func:`repo.reserve_profiles`), so it waits for a batch that is
writing either id, and such a batch waits for it. An erasure locks the profile
first too. A batch that waited on a merge or an erasure sees, once it holds its
profiles' locks, that one of its ids now has an alias or a suppression, and runs
again from the start (the other transaction has committed by then): its events
land on the merged profile, or are dropped.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.segmenter import repository as repo
from services.segmenter.catalog import SegmentCatalog
from services.segmenter.catalog_cache import CatalogCache
from services.segmenter.evaluate import evaluate_customer
from services.segmenter.fold import WorkingProfile, apply_event, merge_profiles, new_profile
from services.segmenter.loyalty_rules import Program
from services.segmenter.messages import (
    change_message,
    deleted_profile_messages,
    profile_message,
)
from services.segmenter.metrics import (
    BATCHES_RERUN,
    EVENTS_APPLIED,
    EVENTS_DUPLICATE,
    EVENTS_SUPPRESSED,
    MEMBERSHIP_CHANGES,
)
from services.segmenter.models import processed_messages
from services.segmenter.recommend.fold import PRODUCT_VIEWED, fold_interactions
from services.segmenter.repository import loyalty as loyalty_store
from services.segmenter.repository import recommendations as recommend_store
from services.segmenter.rules.snapshot import ProfileSnapshot
from services.segmenter.settings import SegmenterGroup
from shared.clock import Clock, utc_now
from shared.db.claims import claim_messages
from shared.db.stamped import StampedCache
from shared.db.transient import is_transient_db_error
from shared.events import registry
from shared.events.base import Position
from shared.events.customer_events import CustomerEvent, EventType
from shared.events.segment_changes import Change
from shared.kafka.consumer import Decoder, Record
from shared.kafka.producer import Message

DECODERS: dict[str, Decoder[Any]] = registry.decoders(registry.CUSTOMER_EVENTS)

log = logging.getLogger(__name__)

#: runs of a batch outdated by merges or erasures before it is left to the runner's backoff
BATCH_RUNS = 3


class BatchOutdated(Exception):
    """Customers of the batch were merged into others (an alias) or suppressed (an
    erasure) by a transaction that committed while the batch waited for their rows:
    run it again."""

    def __init__(self, moved: Mapping[str, str], suppressed: Iterable[str]) -> None:
        super().__init__(
            f"merged meanwhile: {sorted(moved.items())[:5]}, "
            f"suppressed meanwhile: {sorted(suppressed)[:5]}"
        )


def is_transient(exc: BaseException) -> bool:
    """A transient database error, or a batch outdated by a concurrent merge or
    erasure: retry the batch."""
    return isinstance(exc, BatchOutdated) or is_transient_db_error(exc)


@dataclass(kw_only=True, eq=False)
class EventBatchHandler:
    """Applies batches of ``customer.events``; see the module docstring."""

    engine: AsyncEngine
    catalogs: CatalogCache
    clock: Clock = utc_now
    on_commit: Callable[[], None] = lambda: None
    purchase_event: str = "Order Completed"
    view_event: str = PRODUCT_VIEWED
    loyalty: StampedCache[Program | None] | None = None

    async def __call__(self, records: Sequence[Record[CustomerEvent]]) -> None:
        for run in range(1, BATCH_RUNS + 1):
            try:
                await self._run_once(records)
                break
            except BatchOutdated as exc:
                if run == BATCH_RUNS:
                    raise
                BATCHES_RERUN.inc()
                log.info("running a batch again: %s", exc)
        self.on_commit()

    async def _run_once(self, records: Sequence[Record[CustomerEvent]]) -> None:
        catalog = await self.catalogs.current()
        program = await self.loyalty.current() if self.loyalty is not None else None
        now = self.clock()
        async with self.engine.begin() as conn:
            events = await self._drop_suppressed(conn, await self._claim(conn, records))
            if events:
                await self._apply(conn, catalog, events, now, program, positions(records))

    async def _claim(
        self, conn: AsyncConnection, records: Sequence[Record[CustomerEvent]]
    ) -> list[CustomerEvent]:
        unique: dict[str, CustomerEvent] = {}
        for record in records:
            unique.setdefault(record.value.message_id, record.value)
        fresh = await claim_messages(conn, table=processed_messages, message_ids=list(unique))
        EVENTS_DUPLICATE.inc(len(records) - len(fresh))
        return [event for message_id, event in unique.items() if message_id in fresh]

    async def _drop_suppressed(
        self, conn: AsyncConnection, events: list[CustomerEvent]
    ) -> list[CustomerEvent]:
        """Events of suppressed ids (an alias: either id) are dropped, still claimed."""
        ids = {e.customer_id for e in events} | {e.previous_id for e in events if e.previous_id}
        suppressed = await repo.suppressed_among(conn, ids=ids)
        if not suppressed:
            return events
        kept = [
            e for e in events if e.customer_id not in suppressed and e.previous_id not in suppressed
        ]
        EVENTS_SUPPRESSED.inc(len(events) - len(kept))
        return kept

    async def _apply(
        self,
        conn: AsyncConnection,
        catalog: SegmentCatalog,
        events: list[CustomerEvent],
        now: datetime,
        program: Program | None = None,
        at: Mapping[str, Position] | None = None,
    ) -> None:
        """``at``: each customer id's last position in the batch (:func:`positions`)."""
        exits: list[tuple[str, str]] = []
        merged_from: dict[str, list[str]] = defaultdict(list)
        for event in events:
            pair = merge_pair(event)
            if pair is None:
                continue
            left, merge = await self._merge_ids(
                conn, *pair, event.received_at, explicit=event.type is EventType.ALIAS
            )
            exits.extend(left)
            if merge is not None:
                merged_from[merge[1]].append(merge[0])
        others = [e for e in events if e.type is not EventType.ALIAS]
        merged_into = await repo.resolve_aliases(conn, ids={e.customer_id for e in events})
        by_customer: dict[str, list[CustomerEvent]] = defaultdict(list)
        for event in others:
            by_customer[merged_into.get(event.customer_id, event.customer_id)].append(event)
        for alias in (e for e in events if e.type is EventType.ALIAS):
            target = merged_into.get(alias.user_id or "", alias.user_id or "")
            by_customer.setdefault(target, [])

        working, scores = await repo.load_profiles_and_scores(conn, ids=by_customer)
        for customer_id, customer_events in by_customer.items():
            profile = working.get(customer_id)
            if profile is None:
                first = min((e.timestamp for e in customer_events), default=now)
                profile = working[customer_id] = new_profile(customer_id, first)
            for event in customer_events:
                apply_event(profile, event, catalog.tracked)
        for profile in working.values():
            # every profile the batch folded is published, changed or not: its ``folded``
            # position tells the projections they have seen this batch's events (and a
            # merge's traits are published too); each update has a new version
            profile.changed = True
            profile.version += 1
        folded = folded_positions(at or {}, merged_into)
        for customer_id, position in folded.items():
            if customer_id in working:
                working[customer_id].folded = position  # stored, and on its messages
        versions = await repo.upsert_profiles(conn, rows=list(working.values()))
        # every profile of the batch is locked now: a merge or an erasure of one of
        # them either committed before (it shows here) or waits for this transaction
        moved, suppressed = await repo.merged_or_suppressed(conn, ids=working)
        if moved or suppressed:
            raise BatchOutdated(moved, suppressed)
        await repo.add_event_stats(conn, profiles_=working.values())
        await repo.add_rollups(conn, profiles_=working.values())
        await recommend_store.add_interactions(
            conn,
            batch=fold_interactions(
                ((c, e) for c, evs in by_customer.items() for e in evs),
                purchase_event=self.purchase_event,
                view_event=self.view_event,
            ),
        )
        if program is not None:
            await self._apply_loyalty(conn, program, by_customer, working, versions, scores, now)
        EVENTS_APPLIED.inc(len(events))

        removed = await repo.remove_memberships(conn, rows=exits)
        changes = [(s, c, Change.EXITED) for s, c in sorted(removed)]
        changes += await self._evaluate(conn, catalog, working, scores, now)
        await repo.enqueue(conn, messages=membership_change_messages(changes, catalog, now, folded))
        changed = [p for p in working.values() if p.changed]
        await self._publish_profiles(conn, changed, versions, scores, now, merged_from)

    async def _apply_loyalty(
        self,
        conn: AsyncConnection,
        program: Program,
        by_customer: Mapping[str, Sequence[CustomerEvent]],
        working: dict[str, WorkingProfile],
        versions: dict[str, int],
        scores: dict[str, dict[str, Any]],
        now: datetime,
    ) -> None:
        """Points the batch's events earn; a customer whose balance or tier moved gets a
        new profile version (and message), and the segments see the new tier."""
        standings = await loyalty_store.apply_loyalty(
            conn,
            program=program,
            by_customer=by_customer,
            tiers={c: scores.get(c, {}).get("loyalty_tier") for c in by_customer},
            now=now,
        )
        if not standings:
            return
        for customer, held in standings.items():
            scores.setdefault(customer, {}).update(
                loyalty_points=held.points, loyalty_tier=held.tier
            )
        unpublished = sorted(c for c in standings if c in working and not working[c].changed)
        if unpublished:
            versions.update(await repo.bump_versions(conn, ids=unpublished))
        for customer in standings:
            if customer in working:
                working[customer].changed = True

    async def _merge_ids(
        self,
        conn: AsyncConnection,
        previous_id: str,
        user_id: str,
        at: datetime,
        *,
        explicit: bool = True,
    ) -> tuple[list[tuple[str, str]], tuple[str, str] | None]:
        """Merge ``previous_id`` into ``user_id``; return the memberships the old id
        leaves, and the ``(old, new)`` ids merged (None when they were one already).

        An ``identify`` (not ``explicit``) never moves an anonymous id already merged
        into someone: a shared device's next user is not merged with the last one."""
        resolved = await repo.resolve_aliases(conn, ids=[previous_id, user_id])
        if not explicit and previous_id in resolved:
            return [], None
        old = resolved.get(previous_id, previous_id)
        new = resolved.get(user_id, user_id)
        if old == new:
            return [], None
        await repo.record_alias(conn, previous_id=old, customer_id=new)
        reserved = await repo.reserve_profiles(conn, ids=[old, new])
        loaded = await repo.load_profiles(conn, ids=[old, new])
        stored = {i: p for i, p in loaded.items() if i not in reserved}
        await repo.move_activity(conn, from_id=old, to_id=new)
        await recommend_store.move_interactions(conn, from_id=old, to_id=new)
        await loyalty_store.move_ledger(conn, from_id=old, to_id=new)
        if old in stored:
            target = stored.get(new) or new_profile(new, stored[old].first_seen_at)
            target.version = max(target.version, stored[old].version)
            merge_profiles(target, stored[old])
            await repo.upsert_profiles(conn, rows=[target])  # over a placeholder, if any
            await repo.set_timers(conn, due={old: None})
            await repo.enqueue(
                conn,
                messages=deleted_profile_messages(
                    {old: stored[old].version + 1}, at, merged_into=new
                ),
            )
        unused = [new] if new in reserved and old not in stored else []
        await repo.delete_profiles(conn, ids=[old, *unused])
        memberships = await repo.load_memberships(conn, ids=[old])
        left = [(segment_id, old) for segment_id in sorted(memberships.get(old, ()))]
        return left, (old, new)

    async def _evaluate(
        self,
        conn: AsyncConnection,
        catalog: SegmentCatalog,
        working: dict[str, WorkingProfile],
        scores: dict[str, dict[str, Any]],
        now: datetime,
    ) -> list[tuple[str, str, Change]]:
        if not catalog.segments:
            return []
        ids = list(working)
        snapshots = await load_snapshots(conn, catalog, working, scores, now)
        entered: list[tuple[str, str, int, datetime]] = []
        exited: list[tuple[str, str]] = []
        due: dict[str, datetime | None] = {}
        for customer_id in ids:
            result = evaluate_customer(catalog, snapshots[customer_id], now)
            entered += [(s, customer_id, catalog.by_id[s].version, now) for s in result.entered]
            exited += [(s, customer_id) for s in result.exited]
            if catalog.time_dependent:
                due[customer_id] = result.next_due
        # Timers before memberships: a sweep holds the timers it claimed while it writes
        # memberships, so taking them in the other order could deadlock with it.
        await repo.set_timers(conn, due=due)
        added = await repo.add_memberships(conn, rows=entered)
        removed = await repo.remove_memberships(conn, rows=exited)
        return [(s, c, Change.ENTERED) for s, c in sorted(added)] + [
            (s, c, Change.EXITED) for s, c in sorted(removed)
        ]

    async def _publish_profiles(
        self,
        conn: AsyncConnection,
        changed: list[WorkingProfile],
        versions: dict[str, int],
        scores: dict[str, dict[str, Any]],
        now: datetime,
        merged_from: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Queue the ``profiles`` messages with the versions the upsert stored; ``scores``
        were read under the profiles' row locks, so they are still current (only a refit
        writes them); so are the recommendations (the job writes them under a key-share
        lock of the profile rows)."""
        if not changed:
            return
        lists = await recommend_store.load_recommendations(
            conn, ids=[p.customer_id for p in changed]
        )
        messages = [
            profile_message(
                p,
                versions[p.customer_id],
                scores.get(p.customer_id, {}),
                now,
                recommendations=lists.get(p.customer_id),
                merged_from=(merged_from or {}).get(p.customer_id),
            )
            for p in changed
        ]
        await repo.enqueue(conn, messages=messages)


def merge_pair(event: CustomerEvent) -> tuple[str, str] | None:
    """``(previous id, known id)`` when the event merges two ids: an ``alias``, or an
    ``identify`` carrying both an ``anonymousId`` and a different ``userId`` (what
    the Segment and RudderStack SDKs send when a visitor signs in)."""
    if event.type is EventType.ALIAS and event.previous_id and event.user_id:
        return event.previous_id, event.user_id
    if (
        event.type is EventType.IDENTIFY
        and event.user_id
        and event.anonymous_id
        and event.anonymous_id != event.user_id
    ):
        return event.anonymous_id, event.user_id
    return None


def event_batch_handler(
    group: SegmenterGroup,
    *,
    engine: AsyncEngine,
    catalogs: CatalogCache,
    loyalty: StampedCache[Program | None],
    clock: Clock = utc_now,
    on_commit: Callable[[], None] = lambda: None,
) -> EventBatchHandler:
    """The ``customer.events`` handler as a segmenter process runs it, from its settings
    group (the purchase and view events, the loyalty program cache). The runtime and
    ``tenure bench segmenter`` both build it here, so the bench measures what runs."""
    return EventBatchHandler(
        engine=engine,
        catalogs=catalogs,
        clock=clock,
        on_commit=on_commit,
        purchase_event=group.purchase_event,
        view_event=group.recommend_view_event,
        loyalty=loyalty,
    )


async def load_snapshots(
    conn: AsyncConnection,
    catalog: SegmentCatalog,
    working: dict[str, WorkingProfile],
    scores: dict[str, dict[str, Any]],
    now: datetime,
) -> dict[str, ProfileSnapshot]:
    """What the predicates read, as stored after this batch's writes (``scores`` are not
    written by the batch: :func:`repo.load_profiles_and_scores` read them): only the
    statistics and rollup rows some active segment reads."""
    ids = list(working)
    stats = await repo.load_event_stats(conn, ids=ids, events=catalog.stat_events)
    since = (now - timedelta(days=catalog.rollup_days + 1)).astimezone(UTC).date()
    rollups = await repo.load_rollups(conn, ids=ids, pairs=catalog.tracked.pairs, since=since)
    members = await repo.load_memberships(conn, ids=ids)
    snapshots = {}
    for customer_id, profile in working.items():
        score = scores.get(customer_id, {})
        snapshots[customer_id] = ProfileSnapshot(
            customer_id=customer_id,
            first_seen_at=profile.first_seen_at,
            last_seen_at=profile.last_seen_at,
            traits=profile.traits,
            event_stats=stats.get(customer_id, {}),
            rollups=rollups.get(customer_id, {}),
            memberships=frozenset(members.get(customer_id, ())),
            churn_risk=score.get("churn_risk"),
            predicted_ltv=score.get("predicted_ltv"),
            rfm_recency=score.get("rfm_recency"),
            rfm_frequency=score.get("rfm_frequency"),
            rfm_monetary=score.get("rfm_monetary"),
            rfm_tier=score.get("rfm_tier"),
            loyalty_tier=score.get("loyalty_tier"),
        )
    return snapshots


def positions(records: Sequence[Record[CustomerEvent]]) -> dict[str, Position]:
    """Each customer id's last position in the batch (duplicates included: a record the
    segmenter skips as already folded was folded before)."""
    last: dict[str, Position] = {}
    for record in records:
        held = last.get(record.value.customer_id)
        if held is None or (record.partition, record.offset) > (held.partition, held.offset):
            last[record.value.customer_id] = Position(
                partition=record.partition, offset=record.offset
            )
    return last


def folded_positions(
    at: Mapping[str, Position], merged_into: Mapping[str, str]
) -> dict[str, Position]:
    """The position each profile folded up to: its own id's; for a profile with no event
    of its own in the batch, the latest of the ids merged into it (an alias's anonymous
    id, whose events may sit on another partition)."""
    folded: dict[str, Position] = {}
    for customer_id, position in at.items():
        target = merged_into.get(customer_id, customer_id)
        if target != customer_id and target in at:
            continue  # the profile's own position wins
        held = folded.get(target)
        if held is None or (position.partition, position.offset) > (
            held.partition,
            held.offset,
        ):
            folded[target] = position
    return folded


def membership_change_messages(
    changes: list[tuple[str, str, Change]],
    catalog: SegmentCatalog,
    now: datetime,
    folded: Mapping[str, Position] | None = None,
) -> list[Message]:
    messages = []
    counts: Counter[Change] = Counter()
    for segment_id, customer_id, change in changes:
        segment = catalog.by_id.get(segment_id)
        version = segment.version if segment is not None else 1
        position = folded.get(customer_id) if folded else None
        messages.append(
            change_message(segment_id, version, customer_id, change, now, "event", position)
        )
        counts[change] += 1
    for change, count in counts.items():  # one metric update per kind, not per change
        MEMBERSHIP_CHANGES.labels(change.value).inc(count)
    return messages
