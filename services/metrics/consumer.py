"""The metrics consumer: every topic in, aggregates out, one transaction per batch.

1. claim each message's id (``topic:id``: messageId, dispatchId, outcomeId, eventId,
   changeId); a redelivered message is skipped, so nothing counts twice;
2. fold the fresh messages into deltas (:mod:`services.metrics.fold`), by event time;
   Before folding, a ``deleted`` profile (an erasure) moves the customer's rows to a
   pseudonym and logs the id (:mod:`.repository.erasure`); messages of an erased
   customer are then dropped (events) or counted under a pseudonym (the others);
3. apply them with multi-row upserts: customer activity and its period and cohort
   counts, sends (touches) before the goal events they may be credited with, the
   funnel, surveys, segment flows, runs and experiment counts.

``profiles`` is read only for the id merges it announces (``mergedFrom`` /
``mergedInto``): the merged-away id's runs and touches move to the known id
(:mod:`services.metrics.repository.merges`), before the batch's own rows.

The runner commits offsets after this transaction committed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.metrics import repository as repo
from services.metrics.fold import (
    Delta,
    fold_customer_events,
    fold_outcomes,
    fold_requests,
    fold_runs,
    fold_segment_changes,
)
from services.metrics.metrics import CONVERSIONS, FUNNEL, MESSAGES_AGGREGATED, MESSAGES_DUPLICATE
from services.metrics.models import processed_messages
from shared.clock import utc_now
from shared.db.claims import claim_messages
from shared.db.engine import driver_connection
from shared.erasure import pseudonym
from shared.events import (
    customer_events,
    dispatch_outcomes,
    dispatch_requests,
    journey_runs,
    profiles,
    registry,
    segment_changes,
)
from shared.events.profiles import ProfileUpdate, is_erasure, merges_of
from shared.kafka.consumer import Decoder, Record

DECODERS: dict[str, Decoder[Any]] = registry.decoders(
    registry.CUSTOMER_EVENTS,
    registry.DISPATCH_REQUESTS,
    registry.DISPATCH_OUTCOMES,
    registry.JOURNEY_RUNS,
    registry.SEGMENT_CHANGES,
    registry.PROFILES,
)
#: the topics folded into counts (``profiles`` only erases and merges ids)
COUNTED = tuple(topic for topic in DECODERS if topic != profiles.TOPIC)


def message_key(topic: str, value: Any) -> str:
    """The id a message is deduplicated by, prefixed by its topic."""
    if topic == customer_events.TOPIC:
        return f"e:{value.message_id}"
    if topic == dispatch_requests.TOPIC:
        return f"r:{value.dispatch_id}"
    if topic == dispatch_outcomes.TOPIC:
        return f"o:{value.outcome_id}"
    if topic == journey_runs.TOPIC:
        return f"j:{value.event_id}"
    if topic == segment_changes.TOPIC:
        return f"s:{value.change_id}"
    raise ValueError(f"no key for topic {topic!r}")


@dataclass(kw_only=True, eq=False)
class MetricsBatchHandler:
    """Applies batches of every consumed topic; see the module docstring."""

    engine: AsyncEngine
    purchase_event: str
    goals: frozenset[str]
    attribution_window: timedelta
    on_commit: Callable[[], None] = lambda: None

    async def __call__(self, records: Sequence[Record[Any]]) -> None:
        unique: dict[str, Record[Any]] = {}
        updates: list[ProfileUpdate] = []
        for record in records:
            if record.topic == profiles.TOPIC:  # erasures and id merges only, idempotent
                updates.append(record.value)
                continue
            unique.setdefault(message_key(record.topic, record.value), record)
        erased = {u.customer_id for u in updates if is_erasure(u)}
        merges = merges_of(updates)
        if not unique and not erased and not merges:
            self.on_commit()
            return
        async with self.engine.begin() as conn:
            fresh = await claim_messages(conn, table=processed_messages, message_ids=list(unique))
            driver = await driver_connection(conn)
            # the erasures first: what the batch holds of those customers is then
            # dropped or counted under a pseudonym, as are later messages of theirs
            names = await repo.erase_customers(driver, customer_ids=erased, at=utc_now())
            # before the batch's own rows: its goal events then find the moved touches
            await repo.apply_merges(driver, merges)
            by_topic: dict[str, list[Any]] = {topic: [] for topic in COUNTED}
            for key, record in unique.items():
                if key in fresh:
                    by_topic[record.topic].append(record.value)
            gone = await repo.erased_among(
                driver,
                customer_ids={v.customer_id for values in by_topic.values() for v in values},
            )
            if gone:
                _pseudonymise(by_topic, gone, names)
            delta = self.fold(by_topic)
            await self._apply(driver, delta)
        for topic, values in by_topic.items():
            if values:
                MESSAGES_AGGREGATED.labels(topic).inc(len(values))
        duplicates: dict[str, int] = {}
        for key, record in unique.items():
            if key not in fresh:
                duplicates[record.topic] = duplicates.get(record.topic, 0) + 1
        for topic, count in duplicates.items():
            MESSAGES_DUPLICATE.labels(topic).inc(count)
        for (_, journey, step, variant, channel, metric, _), count in delta.funnel.items():
            FUNNEL.labels(journey, step, variant, channel, metric).inc(count)
        self.on_commit()

    def fold(self, by_topic: dict[str, list[Any]]) -> Delta:
        delta = Delta()
        fold_customer_events(
            delta,
            by_topic[customer_events.TOPIC],
            purchase_event=self.purchase_event,
            goals=self.goals,
        )
        fold_requests(delta, by_topic[dispatch_requests.TOPIC])
        fold_outcomes(delta, by_topic[dispatch_outcomes.TOPIC])
        fold_runs(delta, by_topic[journey_runs.TOPIC])
        fold_segment_changes(delta, by_topic[segment_changes.TOPIC])
        return delta

    async def _apply(self, driver: Any, delta: Delta) -> None:
        await repo.apply_activity(driver, delta)
        await repo.insert_touches(driver, delta.touches)
        await repo.redirect_touches(driver, [t.dispatch_id for t in delta.touches])
        await repo.record_coupon_issues(driver, delta.coupon_issues)
        redeemed, converted_by_coupon, credited = await repo.attribute_redemptions(
            driver, delta.redemptions
        )
        for metric, sends in (("redeemed", redeemed), ("converted", converted_by_coupon)):
            for day, who in sends:
                delta.funnel[
                    (day, who.journey_id, who.step_id, who.variant, who.channel, metric, "")
                ] += 1
        goals = [g for g in delta.goals if g not in credited]
        for day, who in await repo.attribute_goals(
            driver, goals=goals, window=self.attribution_window
        ):
            delta.funnel[
                (day, who.journey_id, who.step_id, who.variant, who.channel, "converted", "")
            ] += 1
        for e in await repo.first_engagements(driver, delta.engagements):
            a = e.attribution
            delta.funnel[(e.day, a.journey_id, a.step_id, a.variant, a.channel, e.metric, "")] += 1
        await repo.upsert_funnel(driver, delta.funnel)
        await repo.upsert_surveys(driver, delta.surveys)
        await repo.upsert_segments(driver, delta.segments)
        _, converted = await repo.apply_runs(
            driver, runs=delta.runs, exposures=delta.exposures, conversions=delta.conversions
        )
        await repo.redirect_runs(driver, [r.run_id for r in delta.runs])
        for (journey, _, step, variant), count in converted.items():
            CONVERSIONS.labels(journey, step, variant).inc(count)


def _pseudonymise(
    by_topic: dict[str, list[Any]], gone: frozenset[str], names: dict[str, str]
) -> None:
    """Messages of erased customers: their events are dropped (activity of nobody);
    the others (sends, outcomes, runs, segment changes) still count, under the
    customer's pseudonym of this batch's erasure, else a fresh one."""
    by_topic[customer_events.TOPIC] = [
        e for e in by_topic[customer_events.TOPIC] if e.customer_id not in gone
    ]
    for topic, values in by_topic.items():
        if topic == customer_events.TOPIC:
            continue
        by_topic[topic] = [
            v.model_copy(update={"customer_id": names.setdefault(v.customer_id, pseudonym())})
            if v.customer_id in gone
            else v
            for v in values
        ]
