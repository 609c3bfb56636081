"""``/v1/feedback/email``: bounce and complaint reports (admin token)."""

from __future__ import annotations

from fastapi import APIRouter

from services.dispatcher import metrics, tracking
from services.dispatcher.api.deps import RuntimeDep
from services.dispatcher.schemas import FeedbackCreate, FeedbackPublic
from shared.http.admin import ADMIN
from shared.http.problems import Invalid, problems

router = APIRouter(prefix="/v1/feedback", tags=["tracking"], dependencies=ADMIN)


@router.post("/email", status_code=202, response_model=FeedbackPublic, responses=problems(404, 422))
async def email_feedback(body: FeedbackCreate, runtime: RuntimeDep) -> FeedbackPublic:
    """A hard bounce turns the customer's email channel off; a complaint unsubscribes
    them; both give an event (``Email Bounced`` / ``Email Marked as Spam``), and a
    bounce an outcome ``bounced``. 404 when no delivery has that id (any more)."""
    dispatch_id = body.dispatch_id or _dispatch_of(body.message_id)
    if not dispatch_id:
        raise Invalid("give dispatch_id or message_id", loc=("body", "dispatch_id"))
    event = await tracking.email_feedback(
        runtime.engine, dispatch_id=dispatch_id, body=body, now=runtime.clock()
    )
    runtime.relay.notify()
    metrics.TRACKED.labels(event).inc()
    return FeedbackPublic(dispatch_id=dispatch_id)


def _dispatch_of(message_id: str | None) -> str | None:
    if not message_id:
        return None
    return message_id.strip().strip("<>").split("@", 1)[0] or None
