"""Segments: create, edit (a new version, then a backfill), retire, read, preview."""

from __future__ import annotations

import asyncio
from typing import Any

from services.segmenter import repository as repo
from services.segmenter.catalog import ActiveSegment, SegmentCatalog, SegmentCycle
from services.segmenter.errors import Conflict, InvalidRule, NotFound
from services.segmenter.messages import change_message
from services.segmenter.rules.ast import Node, dump_rule, referenced_segments
from services.segmenter.rules.sql_predicate import compile_sql
from services.segmenter.runtime import Runtime
from services.segmenter.schemas import (
    MembersPublic,
    PreviewPublic,
    PreviewRequest,
    SegmentCreate,
    SegmentPublic,
    SegmentUpdate,
    SegmentVersionPublic,
)
from shared.db.engine import snapshot
from shared.events.segment_changes import Change
from shared.ids import id_from_name


async def create_segment(runtime: Runtime, body: SegmentCreate, *, wait: bool) -> SegmentPublic:
    """Save version 1; its members are computed over every profile (the backfill), before
    answering when ``wait``."""
    segment_id = body.id or id_from_name(body.name, "segment")
    await _check_references(runtime, segment_id, body.rule, 1)
    async with runtime.engine.begin() as conn:
        if await repo.segment_exists(conn, segment_id=segment_id):
            raise Conflict(f"segment {segment_id!r} already exists")
        await repo.save_segment_version(
            conn,
            segment_id=segment_id,
            name=body.name,
            description=body.description,
            definition=dump_rule(body.rule),
            version=1,
        )
    await _run_backfill(runtime, [segment_id], wait)
    return await get_segment(runtime, segment_id)


async def update_segment(
    runtime: Runtime, segment_id: str, body: SegmentUpdate, *, wait: bool
) -> SegmentPublic:
    """Save a new version; members are recomputed, with the segments that read this one."""
    async with runtime.engine.connect() as conn:
        current = await repo.get_segment(conn, segment_id=segment_id)
    if current is None:
        raise NotFound(f"no segment {segment_id!r}")
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
    return await get_segment(runtime, segment_id)


async def delete_segment(runtime: Runtime, segment_id: str) -> None:
    """Retire the segment: every member leaves (an exit each). Refused while others read it."""
    catalog = await runtime.catalogs.current()
    readers = sorted(s.id for s in catalog.segments if segment_id in s.depends_on)
    if readers:
        raise Conflict(f"segments {', '.join(readers)} read this segment")
    now = runtime.clock()
    async with runtime.engine.begin() as conn:
        row = await repo.get_segment(conn, segment_id=segment_id)
        if row is None:
            raise NotFound(f"no segment {segment_id!r}")
        left = await repo.retire_segment(conn, segment_id=segment_id)
        await repo.enqueue(
            conn,
            messages=[
                change_message(segment_id, row.version, c, Change.EXITED, now, "segment_edit")
                for c in left
            ],
        )
    runtime.catalogs.invalidate()
    runtime.relay.notify()


async def list_segments(
    runtime: Runtime, *, after: str | None = None, limit: int | None = None
) -> list[SegmentPublic]:
    async with snapshot(runtime.engine) as conn:
        rows = await repo.list_segments(conn, after=after, limit=limit)
        counts = await repo.member_counts(conn, segment_ids=[row.id for row in rows])
        return [_public(row, counts.get(row.id, 0)) for row in rows]


async def get_segment(runtime: Runtime, segment_id: str) -> SegmentPublic:
    async with snapshot(runtime.engine) as conn:
        row = await repo.get_segment(conn, segment_id=segment_id)
        if row is None:
            raise NotFound(f"no segment {segment_id!r}")
        counts = await repo.member_counts(conn, segment_ids=[segment_id])
    return _public(row, counts.get(segment_id, 0))


async def segment_versions(runtime: Runtime, segment_id: str) -> list[SegmentVersionPublic]:
    async with runtime.engine.connect() as conn:
        rows = await repo.segment_history(conn, segment_id=segment_id)
    if not rows:
        raise NotFound(f"no segment {segment_id!r}")
    return [
        SegmentVersionPublic(version=r.version, rule=r.definition, created_at=r.created_at)
        for r in rows
    ]


async def segment_members(
    runtime: Runtime, segment_id: str, *, after: str | None, limit: int
) -> MembersPublic:
    async with snapshot(runtime.engine) as conn:
        if await repo.get_segment(conn, segment_id=segment_id) is None:
            raise NotFound(f"no segment {segment_id!r}")
        ids = await repo.members_page(conn, segment_id=segment_id, after=after, limit=limit)
    return MembersPublic(
        segment_id=segment_id, customer_ids=ids, next_after=ids[-1] if len(ids) == limit else None
    )


async def preview_segment(runtime: Runtime, body: PreviewRequest) -> PreviewPublic:
    """How many profiles match a rule now, with a sample; computed in SQL, nothing saved."""
    catalog = await runtime.catalogs.current()
    _check_known(catalog, body.rule)
    now = runtime.clock()
    # up to a second for the largest rule: in a thread, so the loop keeps answering
    predicate = await asyncio.to_thread(compile_sql, body.rule, now=now)
    async with snapshot(runtime.engine) as conn:
        count, sample = await repo.matching_profiles(
            conn, predicate=predicate, sample_size=body.sample_size
        )
    return PreviewPublic(count=count, sample=sample, evaluated_at=now)


def _check_known(catalog: SegmentCatalog, rule: Node) -> None:
    missing = sorted(referenced_segments(rule) - set(catalog.by_id))
    if missing:
        raise InvalidRule(f"the rule reads segments that do not exist: {', '.join(missing)}")


async def _check_references(runtime: Runtime, segment_id: str, rule: Node, version: int) -> None:
    """Every segment the rule reads exists, and no cycle appears."""
    catalog = await runtime.catalogs.current()
    _check_known(catalog, rule)
    candidate = ActiveSegment.compile(segment_id, version, dump_rule(rule))
    try:
        SegmentCatalog([*(s for s in catalog.segments if s.id != segment_id), candidate])
    except SegmentCycle as exc:
        raise InvalidRule(str(exc)) from None


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


async def _run_backfill(runtime: Runtime, segment_ids: list[str], wait: bool) -> None:
    if wait:
        await runtime.backfill(segment_ids)
    else:
        runtime.in_background(runtime.backfill(segment_ids))
