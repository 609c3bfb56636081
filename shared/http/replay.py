"""``POST /v1/ops/replay?since=``: publish again what a service's outbox relayed since
a time, for a broker that lost it (the embedded broker keeps nothing; ``tenure dev``
asks every service after it restarted one).

Mounted by every service with an outbox (segmenter, journey, dispatcher, metrics).
The relay keeps what it published for ``TENURE_OUTBOX_REPLAY_WINDOW_S``
(:class:`~shared.db.outbox.OutboxRelay`); the rows relayed at or after ``since`` move
back into the outbox under their first ids, so they go out again in their first
order, before what was queued after them. Consumers dedupe, so a message that did
arrive the first time is harmless.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from shared.http.admin import ADMIN
from shared.http.problems import Invalid, problems
from shared.validation import BoundedDatetime

if TYPE_CHECKING:
    from shared.runtime import HasServiceRuntime

router = APIRouter(prefix="/v1/ops", tags=["operations"], dependencies=ADMIN)


class ReplayPublic(BaseModel):
    since: datetime = Field(description="the relayed rows at or after this time were queued")
    kept_since: datetime = Field(description="how far back a replay could reach now")
    messages: dict[str, int] = Field(description="messages queued again, per topic")
    total: int = Field(description="messages queued again in all")


@router.post(
    "/replay",
    response_model=ReplayPublic,
    responses=problems(401, 422),
    summary="Publish again what the outbox relayed since a time",
)
async def replay(
    request: Request,
    since: Annotated[
        BoundedDatetime,
        Query(
            description="ISO 8601 time (UTC when it has no offset); not in the future, "
            "nor older than the replay window (`TENURE_OUTBOX_REPLAY_WINDOW_S`, 1 h by "
            "default)"
        ),
    ],
) -> ReplayPublic:
    """Queue again, in their first order and before anything queued after them, the
    messages the service's outbox relay published at or after ``since``, and answer
    how many per topic. For a broker that lost messages it had acknowledged;
    consumers dedupe what did arrive."""
    runtime: HasServiceRuntime = request.app.state.runtime
    relay = runtime.service.relay
    if relay is None or relay.relayed_table is None:
        raise Invalid(
            "this service keeps nothing it relayed (TENURE_OUTBOX_REPLAY_WINDOW_S=0)",
            loc=("query", "since"),
            code="nothing_kept",
        )
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    now = request.app.state.clock()
    kept_since = relay.kept_since()
    if since > now:
        raise Invalid(f"since is in the future (now is {now.isoformat()})", loc=("query", "since"))
    if since < kept_since:
        raise Invalid(
            f"since is older than the replay window: the relayed messages are kept for "
            f"{relay.keep_for.total_seconds():g} s, since {kept_since.isoformat()}",
            loc=("query", "since"),
            code="older_than_window",
            kept_since=kept_since.isoformat(),
        )
    queued = await relay.replay(since)
    return ReplayPublic(
        since=since, kept_since=kept_since, messages=queued, total=sum(queued.values())
    )
