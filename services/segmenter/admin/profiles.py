"""Profiles: a customer as the API shows it, and erasure (GDPR)."""

from __future__ import annotations

from datetime import datetime

from services.segmenter import repository as repo
from services.segmenter.catalog import SegmentCatalog
from services.segmenter.errors import NotFound
from services.segmenter.messages import change_message, deleted_profile_messages
from services.segmenter.runtime import Runtime
from services.segmenter.schemas import (
    ErasurePublic,
    EventStatPublic,
    MembershipPublic,
    ProfilePublic,
    RepublishPublic,
    ScoresPublic,
)
from shared.db.engine import snapshot
from shared.events.segment_changes import Change


async def get_profile(runtime: Runtime, customer_id: str) -> ProfilePublic:
    """A customer's profile with memberships, scores and event statistics; an anonymous
    id merged into a known customer answers with that customer."""
    async with snapshot(runtime.engine) as conn:
        target = (await repo.resolve_aliases(conn, ids=[customer_id])).get(customer_id, customer_id)
        row = await repo.profile_row(conn, customer_id=target)
        if row is None:
            raise NotFound(f"no profile {customer_id!r}")
        members = await repo.memberships_of(conn, customer_id=target)
        stats = await repo.event_stats_of(conn, customer_id=target)
        aliases = await repo.aliases_of(conn, customer_id=target)
    return ProfilePublic(
        customer_id=target,
        requested_id=customer_id,
        traits=row.traits,
        first_seen_at=row.first_seen_at,
        last_seen_at=row.last_seen_at,
        timezone=row.timezone,
        locale=row.locale,
        version=row.version,
        aliases=aliases,
        memberships=[
            MembershipPublic(
                segment_id=m.segment_id, segment_version=m.segment_version, entered_at=m.entered_at
            )
            for m in members
        ],
        scores=ScoresPublic(
            churn_risk=row.churn_risk,
            predicted_ltv=row.predicted_ltv,
            rfm_recency=row.rfm_recency,
            rfm_frequency=row.rfm_frequency,
            rfm_monetary=row.rfm_monetary,
            rfm_tier=row.rfm_tier,
            method=row.score_method,
            explanation=row.score_explanation,
            scored_at=row.scored_at,
        ),
        events=[
            EventStatPublic(
                event=s.event_name,
                count=s.count,
                value_sum=s.value_sum,
                first_at=s.first_at,
                last_at=s.last_at,
            )
            for s in stats
        ],
    )


async def erase_profile(runtime: Runtime, customer_id: str, *, suppress: bool) -> ErasurePublic:
    """Erase a customer and the ids merged into them, in one transaction: each membership
    ends with an exit change, a ``deleted`` profile message tells other services to drop
    what they hold, and with ``suppress`` the erased ids' later events are dropped.

    An id without a profile is :class:`NotFound`, unless ``suppress``: then it is
    suppressed all the same (nothing erased), so that its future events are dropped."""
    now = runtime.clock()
    catalog = await runtime.catalogs.current()
    async with runtime.engine.begin() as conn:
        target = (await repo.resolve_aliases(conn, ids=[customer_id])).get(customer_id, customer_id)
        if await repo.profile_row(conn, customer_id=target) is None:
            if not suppress:
                raise NotFound(f"no profile {customer_id!r}")
            # nothing to erase, yet the point is to stop future events: suppress anyway
            await repo.suppress(conn, ids=[target], at=now, reason="erased")
            return ErasurePublic(
                customer_id=target, erased_ids=[], exited_segments=[], suppressed=True
            )
        ids, exited, version = await repo.erase_customer(conn, customer_id=target)
        messages = [
            change_message(s, _version(catalog, s), c, Change.EXITED, now, "customer_deleted")
            for s, c in exited
        ]
        messages += deleted_profile_messages(dict.fromkeys(ids, version), now)
        await repo.enqueue(conn, messages=messages)
        if suppress:
            await repo.suppress(conn, ids=ids, at=now, reason="erased")
    runtime.relay.notify()
    return ErasurePublic(
        customer_id=target,
        erased_ids=ids,
        exited_segments=sorted({s for s, _ in exited}),
        suppressed=suppress,
    )


def _version(catalog: SegmentCatalog, segment_id: str) -> int:
    segment = catalog.by_id.get(segment_id)
    return segment.version if segment is not None else 1


#: profiles published again per transaction
REPUBLISH_CHUNK = 1_000


async def republish_profiles(runtime: Runtime, since: datetime) -> RepublishPublic:
    """Publish again every profile written at or after ``since``, each with a new
    version (so it replaces whatever a consumer's projection holds): the resync of the
    journey's and the dispatcher's copies after the broker lost ``profiles`` messages.
    In chunks of :data:`REPUBLISH_CHUNK`, one transaction each."""
    count, after = 0, ""
    while True:
        async with runtime.engine.begin() as conn:
            ids = await repo.profiles_changed_since(
                conn, since=since, after=after, limit=REPUBLISH_CHUNK
            )
            if ids:
                await repo.publish_profiles(conn, ids=ids, now=runtime.clock())
        if not ids:
            break
        runtime.relay.notify()
        count, after = count + len(ids), ids[-1]
    return RepublishPublic(since=since, profiles=count)
