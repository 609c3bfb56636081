"""``/v1/segments``: definitions, versions, members, previews."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from services.segmenter.admin import segments
from services.segmenter.api.deps import RuntimeDep
from services.segmenter.schemas import (
    MembersPublic,
    PreviewPublic,
    PreviewRequest,
    SegmentCreate,
    SegmentPublic,
    SegmentUpdate,
    SegmentVersionPublic,
)
from shared.http.admin import ADMIN
from shared.http.problems import problems

router = APIRouter(prefix="/v1/segments", tags=["segments"], dependencies=ADMIN)
Wait = Annotated[bool, Query(description="answer after the backfill")]


@router.post(
    "",
    status_code=201,
    response_model=SegmentPublic,
    responses=problems(409, 422),
)
async def create_segment(
    body: SegmentCreate, runtime: RuntimeDep, wait: Wait = False
) -> SegmentPublic:
    """Create a segment; its members are computed over every profile (the backfill)."""
    return await segments.create_segment(runtime, body, wait=wait)


@router.get("", response_model=list[SegmentPublic])
async def list_segments(
    runtime: RuntimeDep,
    after: Annotated[str | None, Query(max_length=64, description="the last id seen")] = None,
    limit: Annotated[int | None, Query(ge=1, le=1_000, description="a page of at most")] = None,
) -> list[SegmentPublic]:
    """Live segments by id with their member counts: every one, or a page (``limit``
    after ``after``; ask ``limit + 1`` to know whether another page follows)."""
    return await segments.list_segments(runtime, after=after, limit=limit)


@router.get("/{segment_id}", response_model=SegmentPublic, responses=problems(404))
async def get_segment(segment_id: str, runtime: RuntimeDep) -> SegmentPublic:
    return await segments.get_segment(runtime, segment_id)


@router.get(
    "/{segment_id}/versions",
    response_model=list[SegmentVersionPublic],
    responses=problems(404),
)
async def segment_versions(segment_id: str, runtime: RuntimeDep) -> list[SegmentVersionPublic]:
    return await segments.segment_versions(runtime, segment_id)


@router.put("/{segment_id}", response_model=SegmentPublic, responses=problems(404, 422))
async def update_segment(
    segment_id: str, body: SegmentUpdate, runtime: RuntimeDep, wait: Wait = False
) -> SegmentPublic:
    """Save a new version; members are recomputed, with the segments that read this one."""
    return await segments.update_segment(runtime, segment_id, body, wait=wait)


@router.delete(
    "/{segment_id}",
    status_code=204,
    responses=problems(404, 409),
)
async def delete_segment(segment_id: str, runtime: RuntimeDep) -> Response:
    """Retire the segment: every member leaves (an exit each). Refused while others read it."""
    await segments.delete_segment(runtime, segment_id)
    return Response(status_code=204)


@router.get("/{segment_id}/members", response_model=MembersPublic, responses=problems(404))
async def segment_members(
    segment_id: str,
    runtime: RuntimeDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
) -> MembersPublic:
    return await segments.segment_members(runtime, segment_id, after=after, limit=limit)


@router.post("/preview", response_model=PreviewPublic, responses=problems(422))
async def preview_segment(body: PreviewRequest, runtime: RuntimeDep) -> PreviewPublic:
    """How many profiles match a rule now, with a sample; computed in SQL, nothing saved."""
    return await segments.preview_segment(runtime, body)
