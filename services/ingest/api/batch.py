"""``POST /v1/batch`` (and Segment's alias ``/v1/import``): many calls at once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from services.ingest.api.deps import RuntimeDep, field_errors, read_authorized_call
from services.ingest.metrics import EVENTS_REJECTED
from services.ingest.normalize import FieldError, InvalidEvent, normalize
from shared.events.customer_events import CustomerEvent, EventType
from shared.http.problems import BadRequest
from shared.http.responses import json_response

router = APIRouter(prefix="/v1", tags=["tracking"])
_TYPES = frozenset(t.value for t in EventType)


@router.post("/batch", summary="Batch of calls")
@router.post("/import", summary="Batch of calls (Segment's alias of /v1/batch)")
async def batch(request: Request, runtime: RuntimeDep) -> Response:
    """Accept the valid calls of ``{"batch": [...]}``; report the invalid ones by index.

    A neighbour's error never drops a valid event: the answer is 200 with
    ``rejected`` listing each bad index, or a 400 problem when no call was valid
    (``errors``: each field error, its ``loc`` starting ``body, batch, <index>``).
    """
    limits = runtime.limits
    parsed, write_key = await read_authorized_call(request, runtime, limits.max_batch_bytes)
    body = parsed.value
    calls = body.get("batch") if isinstance(body, dict) else None
    if not isinstance(calls, list) or not calls:
        raise BadRequest(
            "send a non-empty list of calls in `batch`",
            code="invalid_batch",
            errors=[
                {"loc": ["body", "batch"], "msg": "must be a non-empty list", "type": "invalid"}
            ],
        )
    runtime.admit(write_key, len(calls))
    received_at = datetime.now(UTC)
    sent_at = body.get("sentAt")
    max_event_bytes = limits.max_event_bytes
    accepted: list[CustomerEvent] = []
    rejected: list[dict[str, Any]] = []
    problems: list[dict[str, object]] = []
    for index, raw in enumerate(calls):
        try:
            if len(orjson.dumps(raw)) > max_event_bytes:
                raise InvalidEvent(
                    "too_large",
                    [FieldError("body", f"an event may be at most {max_event_bytes} bytes")],
                )
            accepted.append(
                normalize(
                    raw,
                    call_type=None,
                    received_at=received_at,
                    batch_sent_at=sent_at,
                    may_contain_nul=parsed.may_contain_nul,
                )
            )
        except InvalidEvent as exc:
            call = raw.get("type") if isinstance(raw, dict) else None
            EVENTS_REJECTED.labels(call if call in _TYPES else "unknown", exc.reason).inc()
            rejected.append({"index": index, "error": exc.reason, "errors": exc.as_dict()})
            problems += field_errors(exc.errors, exc.reason, at=("body", "batch", index))
    if not accepted:
        raise BadRequest(
            f"no call of the batch is valid ({len(rejected)} rejected)",
            code="invalid_batch",
            errors=problems,
        )
    await runtime.publish(accepted)
    return json_response({"success": True, "accepted": len(accepted), "rejected": rejected})
