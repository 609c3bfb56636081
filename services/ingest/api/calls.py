"""``POST /v1/{track,identify,page,screen,group,alias}``: one Segment call each."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from services.ingest.api.deps import RuntimeDep, field_errors, read_authorized_call
from services.ingest.metrics import EVENTS_REJECTED
from services.ingest.normalize import InvalidEvent, normalize
from shared.events.customer_events import EventType
from shared.http.problems import BadRequest
from shared.http.responses import json_response

router = APIRouter(prefix="/v1", tags=["tracking"])


def _single_call_route(call_type: EventType) -> Callable[..., Awaitable[Response]]:
    async def handle(request: Request, runtime: RuntimeDep) -> Response:
        limits = runtime.limits
        body, write_key = await read_authorized_call(request, runtime, limits.max_event_bytes)
        runtime.admit(write_key, 1)
        try:
            event = normalize(
                body.value,
                call_type=call_type,
                received_at=datetime.now(UTC),
                may_contain_nul=body.may_contain_nul,
            )
        except InvalidEvent as exc:
            EVENTS_REJECTED.labels(call_type.value, exc.reason).inc()
            raise BadRequest(
                str(exc), code=exc.reason, errors=field_errors(exc.errors, exc.reason)
            ) from None
        await runtime.publish([event])
        return json_response({"success": True, "messageId": event.message_id})

    handle.__name__ = call_type.value
    handle.__doc__ = f"Record one `{call_type.value}` call (Segment spec)."
    return handle


for _type in EventType:
    router.add_api_route(
        f"/{_type.value}",
        _single_call_route(_type),
        methods=["POST"],
        summary=f"{_type.value.capitalize()} call",
    )
