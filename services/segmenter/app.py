"""The segmenter's service: the ``customer.events`` consumer, the timer sweeper, the
score refits, the outbox relay, and the admin HTTP API for segments and profiles.

Every endpoint but the operational ones needs ``Authorization: Bearer <admin token>``.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from services.segmenter import repository as repo
from services.segmenter.backfill import backfill, resume_unfinished, with_dependents
from services.segmenter.catalog import ActiveSegment, SegmentCatalog, SegmentCycle
from services.segmenter.catalog_cache import CatalogCache
from services.segmenter.consumer import Clock, EventBatchHandler, is_transient, utc_now
from services.segmenter.messages import change_message, deleted_profile_messages
from services.segmenter.models import outbox, processed_messages
from services.segmenter.rules.ast import Node, dump_rule, referenced_segments
from services.segmenter.rules.sql_predicate import compile_sql
from services.segmenter.schemas import (
    ErasurePublic,
    EventStatPublic,
    FitReport,
    LastFitPublic,
    MembershipPublic,
    MembersPublic,
    PreviewPublic,
    PreviewRequest,
    ProfilePublic,
    ScoresPublic,
    SegmentCreate,
    SegmentPublic,
    SegmentUpdate,
    SegmentVersionPublic,
    SuppressionPublic,
    SuppressionRequest,
    SuppressionsPublic,
)
from services.segmenter.scoring_job import (
    last_fit,
    last_fit_at,
    refit_lock,
    refit_options,
    refit_scores,
)
from services.segmenter.settings import SegmenterSettings, get_settings
from services.segmenter.sweeper import membership_sweep
from shared.auth import TokenDigests
from shared.collector import tuned_for_throughput
from shared.db.claims import claims_cleanup
from shared.db.engine import create_engine, snapshot
from shared.db.outbox import OutboxRelay, enqueue
from shared.db.tables import table_of
from shared.events.customer_events import TOPIC as CUSTOMER_EVENTS
from shared.events.customer_events import CustomerEvent
from shared.events.segment_changes import Change
from shared.http.app import create_service_app
from shared.kafka.consumer import ConsumerRunner
from shared.kafka.dlq import DeadLetterPolicy
from shared.kafka.producer import EventPublisher
from shared.runtime import ServiceRuntime
from shared.stopping import PeriodicJob

log = logging.getLogger(__name__)


class RefitRunning(Exception):
    """Another segmenter process holds the refit lock."""


class Runtime:
    """What the lifespan builds and the routes use: the segmenter's parts, started and
    stopped by a :class:`~shared.runtime.ServiceRuntime`, and the work routes start."""

    def __init__(self, settings: SegmenterSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.engine: AsyncEngine = create_engine(settings.database)
        self.publisher = EventPublisher(settings.kafka, client_id="tenure-segmenter")
        self.catalogs = CatalogCache(self.engine)
        self.relay = OutboxRelay(engine=self.engine, outbox=outbox, publisher=self.publisher)
        self.service = ServiceRuntime(
            "segmenter", engine=self.engine, publisher=self.publisher, relay=self.relay
        )
        group = settings.segmenter
        self.runner = self.service.consumer(
            "consumer",
            ConsumerRunner(
                settings=settings.kafka,
                group_id=group.consumer_group,
                decoders={CUSTOMER_EVENTS: CustomerEvent.from_bytes},
                handler=EventBatchHandler(
                    engine=self.engine,
                    catalogs=self.catalogs,
                    clock=clock,
                    on_commit=self.relay.notify,
                ),
                dead_letters=DeadLetterPolicy(self.publisher),
                is_transient=is_transient,
                max_records=group.max_batch_records,
            ),
        )
        self.service.loop(
            "sweeper",
            membership_sweep(
                engine=self.engine,
                catalogs=self.catalogs,
                clock=clock,
                interval_s=group.sweep_interval_s,
                chunk=group.sweep_chunk,
                workers=group.sweep_workers,
                on_commit=self.relay.notify,
            ),
        )
        self.service.loop(
            "claims cleanup",
            claims_cleanup(
                engine=self.engine,
                table=processed_messages,
                clock=clock,
                retention=timedelta(days=group.dedup_retention_days),
            ),
        )
        self.service.loop(
            "refit",
            PeriodicJob(
                self.scheduled_refit, name="score refit", interval_s=group.refit_interval_s
            ),
        )
        self.service.loop(
            "backfills",
            PeriodicJob(
                self.resume_backfills,
                name="resuming unfinished backfills",
                interval_s=group.backfill_resume_interval_s,
                at_start=True,
            ),
        )

    def in_background(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.service.in_background(coro)

    async def refit(self) -> FitReport:
        """Refit now; :class:`RefitRunning` when another process is refitting."""
        async with refit_lock(self.engine) as held:
            if not held:
                raise RefitRunning
            return await self._refit()

    async def scheduled_refit(self) -> FitReport | None:
        """The periodic refit: skipped while another process refits, or when
        one refitted within the last half interval (every replica and worker runs a
        loop, and they start together)."""
        async with refit_lock(self.engine) as held:
            if not held:
                log.info("scheduled refit skipped: another process is refitting")
                return None
            last = await last_fit_at(self.engine)
            interval = self.settings.segmenter.refit_interval_s
            if last is not None and (self.clock() - last).total_seconds() < interval / 2:
                log.info("scheduled refit skipped: the last fit is from %s", last.isoformat())
                return None
            return await self._refit()

    async def _refit(self) -> FitReport:
        catalog = await self.catalogs.current()
        group = self.settings.segmenter
        report = await refit_scores(
            self.engine,
            catalog,
            now=self.clock(),
            options=refit_options(group),
            backfill_chunk=group.backfill_chunk,
        )
        self.relay.notify()
        return report

    async def resume_backfills(self) -> None:
        chunk = self.settings.segmenter.backfill_chunk
        if await resume_unfinished(self.engine, self.catalogs, now=self.clock(), chunk=chunk):
            self.relay.notify()

    async def backfill(self, segment_ids: list[str]) -> None:
        self.catalogs.invalidate()
        catalog = await self.catalogs.current()
        await backfill(
            self.engine,
            catalog,
            with_dependents(catalog, segment_ids),
            now=self.clock(),
            chunk=self.settings.segmenter.backfill_chunk,
        )
        self.relay.notify()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime = Runtime(app.state.settings, app.state.clock)
    app.state.runtime = runtime
    async with runtime.service.running(app):
        with tuned_for_throughput():
            yield


# --- dependencies ----------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False)


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    tokens: TokenDigests = request.app.state.admin_tokens
    if credentials is None or not tokens.accepts(credentials.credentials):
        raise HTTPException(
            401,
            detail="send an admin token as `Authorization: Bearer <token>`"
            if credentials is None
            else "the admin token is not valid",
            headers={"WWW-Authenticate": "Bearer"},
        )


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
segments_router = APIRouter(
    prefix="/v1/segments", tags=["segments"], dependencies=[Depends(require_admin)]
)
profiles_router = APIRouter(
    prefix="/v1/profiles", tags=["profiles"], dependencies=[Depends(require_admin)]
)
suppressions_router = APIRouter(
    prefix="/v1/suppressions", tags=["suppressions"], dependencies=[Depends(require_admin)]
)
scores_router = APIRouter(
    prefix="/v1/scores", tags=["scores"], dependencies=[Depends(require_admin)]
)


def _invalid_rule(message: str, loc: tuple[str | int, ...] = ("body", "rule")) -> HTTPException:
    return HTTPException(422, detail=[{"loc": list(loc), "msg": message, "type": "value_error"}])


async def _check_references(runtime: Runtime, segment_id: str, rule: Node, version: int) -> None:
    """Every segment the rule reads exists, and no cycle appears."""
    catalog = await runtime.catalogs.current()
    missing = sorted(referenced_segments(rule) - set(catalog.by_id))
    if missing:
        raise _invalid_rule(f"the rule reads segments that do not exist: {', '.join(missing)}")
    candidate = ActiveSegment.compile(segment_id, version, dump_rule(rule))
    try:
        SegmentCatalog([*(s for s in catalog.segments if s.id != segment_id), candidate])
    except SegmentCycle as exc:
        raise _invalid_rule(str(exc)) from None


def _public(row: Any, members: int) -> SegmentPublic:
    return SegmentPublic(
        id=row.id,
        name=row.name,
        description=row.description,
        version=row.version,
        rule=row.definition,
        members=members,
        created_at=row.created_at,
        updated_at=row.updated_at,
        status="ready" if row.backfilled_version >= row.version else "backfilling",
    )


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48]
    return f"{slug or 'segment'}-{uuid.uuid4().hex[:6]}"


async def _run_backfill(runtime: Runtime, segment_ids: list[str], wait: bool) -> None:
    if wait:
        await runtime.backfill(segment_ids)
    else:
        runtime.in_background(runtime.backfill(segment_ids))


# --- segments ----------------------------------------------------------------------------


@segments_router.post("", status_code=201, response_model=SegmentPublic)
async def create_segment(
    body: SegmentCreate,
    runtime: RuntimeDep,
    wait: Annotated[bool, Query(description="answer after the backfill")] = False,
) -> SegmentPublic:
    """Create a segment; its members are computed over every profile (the backfill)."""
    segment_id = body.id or _slug(body.name)
    await _check_references(runtime, segment_id, body.rule, 1)
    async with runtime.engine.begin() as conn:
        if await repo.segment_exists(conn, segment_id=segment_id):
            raise HTTPException(409, detail=f"segment {segment_id!r} already exists")
        await repo.save_segment_version(
            conn,
            segment_id=segment_id,
            name=body.name,
            description=body.description,
            definition=dump_rule(body.rule),
            version=1,
        )
    await _run_backfill(runtime, [segment_id], wait)
    return await get_segment(segment_id, runtime)


@segments_router.get("", response_model=list[SegmentPublic])
async def list_segments(runtime: RuntimeDep) -> list[SegmentPublic]:
    async with snapshot(runtime.engine) as conn:
        counts = await repo.member_counts(conn)
        return [_public(row, counts.get(row.id, 0)) for row in await repo.list_segments(conn)]


@segments_router.get("/{segment_id}", response_model=SegmentPublic)
async def get_segment(segment_id: str, runtime: RuntimeDep) -> SegmentPublic:
    async with snapshot(runtime.engine) as conn:
        row = await repo.get_segment(conn, segment_id=segment_id)
        if row is None:
            raise HTTPException(404, detail=f"no segment {segment_id!r}")
        counts = await repo.member_counts(conn)
    return _public(row, counts.get(segment_id, 0))


@segments_router.get("/{segment_id}/versions", response_model=list[SegmentVersionPublic])
async def segment_versions(segment_id: str, runtime: RuntimeDep) -> list[SegmentVersionPublic]:
    async with runtime.engine.connect() as conn:
        rows = await repo.segment_history(conn, segment_id=segment_id)
    if not rows:
        raise HTTPException(404, detail=f"no segment {segment_id!r}")
    return [
        SegmentVersionPublic(version=r.version, rule=r.definition, created_at=r.created_at)
        for r in rows
    ]


@segments_router.put("/{segment_id}", response_model=SegmentPublic)
async def update_segment(
    segment_id: str,
    body: SegmentUpdate,
    runtime: RuntimeDep,
    wait: Annotated[bool, Query(description="answer after the backfill")] = False,
) -> SegmentPublic:
    """Save a new version; members are recomputed, with the segments that read this one."""
    async with runtime.engine.connect() as conn:
        current = await repo.get_segment(conn, segment_id=segment_id)
    if current is None:
        raise HTTPException(404, detail=f"no segment {segment_id!r}")
    rule = body.rule
    if rule is not None:
        await _check_references(runtime, segment_id, rule, current.version + 1)
    async with runtime.engine.begin() as conn:
        await repo.save_segment_version(
            conn,
            segment_id=segment_id,
            name=body.name if body.name is not None else current.name,
            description=body.description if body.description is not None else current.description,
            definition=dump_rule(rule) if rule is not None else current.definition,
            version=current.version + 1,
        )
    await _run_backfill(runtime, [segment_id], wait)
    return await get_segment(segment_id, runtime)


@segments_router.delete("/{segment_id}", status_code=204)
async def delete_segment(segment_id: str, runtime: RuntimeDep) -> Response:
    """Retire the segment: every member leaves (an exit each). Refused while others read it."""
    catalog = await runtime.catalogs.current()
    readers = sorted(s.id for s in catalog.segments if segment_id in s.depends_on)
    if readers:
        raise HTTPException(409, detail=f"segments {', '.join(readers)} read this segment")
    now = runtime.clock()
    async with runtime.engine.begin() as conn:
        row = await repo.get_segment(conn, segment_id=segment_id)
        if row is None:
            raise HTTPException(404, detail=f"no segment {segment_id!r}")
        left = await repo.retire_segment(conn, segment_id=segment_id)
        await enqueue(
            session=conn,
            outbox=outbox,
            messages=[
                change_message(segment_id, row.version, c, Change.EXITED, now, "segment_edit")
                for c in left
            ],
        )
    runtime.catalogs.invalidate()
    runtime.relay.notify()
    return Response(status_code=204)


@segments_router.get("/{segment_id}/members", response_model=MembersPublic)
async def segment_members(
    segment_id: str,
    runtime: RuntimeDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
) -> MembersPublic:
    async with snapshot(runtime.engine) as conn:
        if await repo.get_segment(conn, segment_id=segment_id) is None:
            raise HTTPException(404, detail=f"no segment {segment_id!r}")
        ids = await repo.members_page(conn, segment_id=segment_id, after=after, limit=limit)
    return MembersPublic(
        segment_id=segment_id, customer_ids=ids, next_after=ids[-1] if len(ids) == limit else None
    )


@segments_router.post("/preview", response_model=PreviewPublic)
async def preview_segment(body: PreviewRequest, runtime: RuntimeDep) -> PreviewPublic:
    """How many profiles match a rule now, with a sample; computed in SQL, nothing saved."""
    from sqlalchemy import func, select

    from services.segmenter.models import Profile

    catalog = await runtime.catalogs.current()
    missing = sorted(referenced_segments(body.rule) - set(catalog.by_id))
    if missing:
        raise _invalid_rule(f"the rule reads segments that do not exist: {', '.join(missing)}")
    now = runtime.clock()
    profiles = table_of(Profile)
    predicate = compile_sql(body.rule, now=now)
    async with snapshot(runtime.engine) as conn:
        count = await conn.scalar(select(func.count()).select_from(profiles).where(predicate))
        sample = (
            (
                await conn.execute(
                    select(profiles.c.customer_id)
                    .where(predicate)
                    .order_by(profiles.c.customer_id)
                    .limit(body.sample_size)
                )
            )
            .scalars()
            .all()
        )
    return PreviewPublic(count=count or 0, sample=list(sample), evaluated_at=now)


# --- profiles ----------------------------------------------------------------------------


@profiles_router.get("/{customer_id}", response_model=ProfilePublic)
async def get_profile(customer_id: str, runtime: RuntimeDep) -> ProfilePublic:
    """A customer's profile with memberships, scores and event statistics.

    An anonymous id merged into a known customer answers with that customer.
    """
    async with snapshot(runtime.engine) as conn:
        target = (await repo.resolve_aliases(conn, ids=[customer_id])).get(customer_id, customer_id)
        row = await repo.profile_row(conn, customer_id=target)
        if row is None:
            raise HTTPException(404, detail=f"no profile {customer_id!r}")
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


@profiles_router.delete("/{customer_id}", response_model=ErasurePublic)
async def erase_profile(
    customer_id: str,
    runtime: RuntimeDep,
    suppress: Annotated[
        bool, Query(description="also drop every later event of the erased ids")
    ] = False,
) -> ErasurePublic:
    """Erase a customer (GDPR): profile, rollups, statistics, memberships, merged ids.

    Each membership ends with an exit change, and a ``deleted`` profile message
    tells other services to drop what they hold. Without ``suppress``, a later event
    of the customer starts a new profile; with it, the erased ids are suppressed.
    """
    now = runtime.clock()
    catalog = await runtime.catalogs.current()
    async with runtime.engine.begin() as conn:
        target = (await repo.resolve_aliases(conn, ids=[customer_id])).get(customer_id, customer_id)
        if await repo.profile_row(conn, customer_id=target) is None:
            raise HTTPException(404, detail=f"no profile {customer_id!r}")
        ids, exited, version = await repo.erase_customer(conn, customer_id=target)
        messages = [
            change_message(s, _version(catalog, s), c, Change.EXITED, now, "customer_deleted")
            for s, c in exited
        ]
        messages += deleted_profile_messages(dict.fromkeys(ids, version), now)
        await enqueue(session=conn, outbox=outbox, messages=messages)
        if suppress:
            await repo.suppress(conn, ids=ids, at=now, reason="erased")
    runtime.relay.notify()
    return ErasurePublic(
        customer_id=target,
        erased_ids=ids,
        exited_segments=sorted({s for s, _ in exited}),
        suppressed=suppress,
    )


# --- suppressions ------------------------------------------------------------------------


@suppressions_router.get("", response_model=SuppressionsPublic)
async def list_suppressions(
    runtime: RuntimeDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
) -> SuppressionsPublic:
    async with snapshot(runtime.engine) as conn:
        rows = await repo.suppressions_page(conn, after=after, limit=limit)
    return SuppressionsPublic(
        suppressions=[
            SuppressionPublic(
                customer_id=r.customer_id, suppressed_at=r.suppressed_at, reason=r.reason
            )
            for r in rows
        ],
        next_after=rows[-1].customer_id if len(rows) == limit else None,
    )


@suppressions_router.put("/{customer_id}", response_model=SuppressionPublic)
async def suppress_customer(
    customer_id: str, runtime: RuntimeDep, body: SuppressionRequest | None = None
) -> SuppressionPublic:
    """Drop every later event of this id (its profile, if any, stays as it is: erase it
    with ``DELETE /v1/profiles/{id}?suppress=true`` to drop both). Idempotent."""
    reason = body.reason if body is not None else "requested"
    async with runtime.engine.begin() as conn:
        await repo.suppress(conn, ids=[customer_id], at=runtime.clock(), reason=reason)
        row = await repo.suppression(conn, customer_id=customer_id)
    assert row is not None
    return SuppressionPublic(
        customer_id=row.customer_id, suppressed_at=row.suppressed_at, reason=row.reason
    )


@suppressions_router.delete("/{customer_id}", status_code=204)
async def lift_suppression(customer_id: str, runtime: RuntimeDep) -> Response:
    """Accept this id's events again, from now on (dropped events are not replayed)."""
    async with runtime.engine.begin() as conn:
        if not await repo.lift_suppression(conn, customer_id=customer_id):
            raise HTTPException(404, detail=f"{customer_id!r} is not suppressed")
    return Response(status_code=204)


def _version(catalog: SegmentCatalog, segment_id: str) -> int:
    segment = catalog.by_id.get(segment_id)
    return segment.version if segment is not None else 1


# --- scores ------------------------------------------------------------------------------


@scores_router.post(
    "/refit",
    response_model=FitReport,
    responses={409: {"description": "another replica or worker is refitting now"}},
)
async def refit(runtime: RuntimeDep) -> FitReport:
    """Refit the churn / LTV models now and rescore every customer."""
    try:
        return await runtime.refit()
    except RefitRunning:
        raise HTTPException(
            409,
            detail="a refit is running in another segmenter process; try again when it ends",
        ) from None


@scores_router.get(
    "/fit", response_model=LastFitPublic, responses={404: {"description": "never fitted"}}
)
async def latest_fit(runtime: RuntimeDep) -> LastFitPublic:
    """The latest refit: the churn definition, the method used and why, and each churn
    candidate's backtest (AUC, Brier score, sample sizes)."""
    found = await last_fit(runtime.engine)
    if found is None:
        raise HTTPException(404, detail="no refit yet: POST /v1/scores/refit")
    return found


def create_app(
    settings: SegmenterSettings | None = None, *, clock: Callable[[], datetime] = utc_now
) -> FastAPI:
    settings = settings or get_settings()
    app = create_service_app(
        title="Tenure segmenter",
        description="Customer profiles, segments, churn risk and lifetime value.",
        version="1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.admin_tokens = TokenDigests(settings.segmenter.admin_token_digests)
    for router in (segments_router, profiles_router, suppressions_router, scores_router):
        app.include_router(router)
    return app
