"""``/v1/profiles``: a customer's profile, and erasure."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from services.segmenter.admin import profiles
from services.segmenter.api.deps import RuntimeDep
from services.segmenter.schemas import ErasurePublic, ProfilePublic, RepublishPublic
from shared.http.admin import ADMIN
from shared.http.problems import Invalid, problems

router = APIRouter(prefix="/v1/profiles", tags=["profiles"], dependencies=ADMIN)


@router.post("/republish", response_model=RepublishPublic, responses=problems(422))
async def republish_profiles(
    runtime: RuntimeDep,
    since: Annotated[
        datetime, Query(description="publish again every profile written at or after this")
    ],
) -> RepublishPublic:
    """Publish the profiles changed since ``since`` again on ``profiles``, each with a
    new version: resyncs the journey's and the dispatcher's profile copies after the
    broker lost messages (see docs/architecture.md, "Reliability rules")."""
    if since.tzinfo is None:
        raise Invalid("since needs a UTC offset (say 2026-12-01T00:00:00Z)", loc=("query", "since"))
    return await profiles.republish_profiles(runtime, since)


@router.get("/{customer_id:path}", response_model=ProfilePublic, responses=problems(404))
async def get_profile(customer_id: str, runtime: RuntimeDep) -> ProfilePublic:
    """A customer's profile with memberships, scores and event statistics.

    An anonymous id merged into a known customer answers with that customer.
    """
    return await profiles.get_profile(runtime, customer_id)


@router.delete("/{customer_id:path}", response_model=ErasurePublic, responses=problems(404))
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
    return await profiles.erase_profile(runtime, customer_id, suppress=suppress)
