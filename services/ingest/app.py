"""Ingest's HTTP API: the Segment tracking API, answered only after the broker's ack.

``POST /v1/{track,identify,page,screen,group,alias}`` take one call,
``POST /v1/batch`` (and ``/v1/import``) take ``{"batch": [...]}``. A 200 means
every accepted event is stored in ``customer.events`` with ``acks=all``.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request, Response

from services.ingest.auth import key_from_authorization
from services.ingest.body import Body, BodyError, call_headers, parse_json, read_limited
from services.ingest.metrics import (
    EVENTS_RECEIVED,
    EVENTS_REJECTED,
    PUBLISH_SECONDS,
    RATE_LIMITED,
)
from services.ingest.normalize import InvalidEvent, normalize
from services.ingest.openapi import documented_openapi
from services.ingest.ratelimit import RateLimiter
from services.ingest.settings import IngestSettings, get_settings
from shared.auth import TokenDigests, hash_token
from shared.collector import tuned_for_throughput
from shared.errors import PublishError
from shared.events.customer_events import TOPIC, CustomerEvent, EventType
from shared.http.app import add_readiness_check, create_service_app
from shared.http.responses import json_response
from shared.kafka.producer import EventPublisher, Message


class IngestError(Exception):
    """An answer other than 200, with a JSON body that says why."""

    def __init__(self, status: int, error: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.body = {"success": False, "error": error, "detail": detail, **extra}
        self.headers: dict[str, str] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: IngestSettings = app.state.settings
    publisher = EventPublisher(settings.kafka, client_id="tenure-ingest")
    await publisher.start()
    app.state.publisher = publisher
    add_readiness_check(app, "broker", partial(publisher.check_ready, (TOPIC,)))
    try:
        with tuned_for_throughput():
            yield
    finally:
        await publisher.stop()


# The routes read the publisher and settings from app.state themselves rather than
# through FastAPI dependencies: a sync dependency runs in the thread pool, and two
# thread hops a request cost more than everything else a single call does.
def get_publisher(request: Request) -> EventPublisher:
    return request.app.state.publisher  # type: ignore[no-any-return]


def get_ingest_settings(request: Request) -> IngestSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


router = APIRouter(prefix="/v1", tags=["tracking"])
_TYPES = frozenset(t.value for t in EventType)
#: one counter child per call type, looked up once rather than per event
_RECEIVED = {t: EVENTS_RECEIVED.labels(t.value) for t in EventType}


async def _read_authorized_call(request: Request, limit: int) -> tuple[Body, str]:
    """The parsed body and the write key that authorised it."""
    keys: TokenDigests = request.app.state.write_keys
    headers = call_headers(request)
    header_key = key_from_authorization(headers.authorization)
    if header_key is not None and not keys.accepts(header_key):
        raise _unauthorized("the write key is not valid")
    try:
        parsed = parse_json(await read_limited(request, limit, headers))
    except BodyError as exc:
        error = IngestError(exc.status, exc.error, exc.detail, **exc.extra)
        if exc.error == "unsupported_encoding":
            error.headers["Accept-Encoding"] = exc.extra["accepted"]
        raise error from None
    body = parsed.value
    if header_key is None:
        body_key = body.get("writeKey") if isinstance(body, dict) else None
        if body_key is None:
            raise _unauthorized(
                "send the write key as the HTTP Basic username "
                "(empty password) or as writeKey in the body"
            )
        if not isinstance(body_key, str) or not keys.accepts(body_key):
            raise _unauthorized("the write key is not valid")
        return parsed, body_key
    return parsed, header_key


def _admit(request: Request, write_key: str, events: int) -> None:
    """Take ``events`` tokens from the key's bucket, or answer 429 with Retry-After."""
    limiter: RateLimiter = request.app.state.rate_limiter
    if not limiter.enabled:
        return
    digest = hash_token(write_key)
    wait_s = limiter.take(digest, events)
    if wait_s is None:
        return
    RATE_LIMITED.labels(digest[:8]).inc()
    retry_after = max(1, math.ceil(wait_s))
    error = IngestError(
        429,
        "rate_limited",
        f"this write key's rate limit is exhausted; retry in {retry_after} s",
        retry_after_s=retry_after,
    )
    error.headers["Retry-After"] = str(retry_after)
    raise error


def _unauthorized(detail: str) -> IngestError:
    error = IngestError(401, "unauthorized", detail)
    error.headers["WWW-Authenticate"] = 'Basic realm="tenure"'
    return error


async def _publish(
    publisher: EventPublisher, events: list[CustomerEvent], retry_after: int
) -> None:
    started = time.perf_counter()
    messages = [
        Message(TOPIC, event.key, event.model_dump_json(exclude_none=True).encode())
        for event in events
    ]
    try:
        await publisher.publish_many(messages)
    except PublishError as exc:
        for call_type, count in _count_types(events).items():
            EVENTS_REJECTED.labels(call_type.value, "broker_unavailable").inc(count)
        error = IngestError(
            503, "broker_unavailable", f"the events were not stored, retry later: {exc}"
        )
        error.headers["Retry-After"] = str(retry_after)
        raise error from None
    PUBLISH_SECONDS.observe(time.perf_counter() - started)
    for call_type, count in _count_types(events).items():
        _RECEIVED[call_type].inc(count)


def _count_types(events: list[CustomerEvent]) -> dict[EventType, int]:
    counts: dict[EventType, int] = {}
    for event in events:
        counts[event.type] = counts.get(event.type, 0) + 1
    return counts


def _single_call_route(call_type: EventType) -> Any:
    async def handle(request: Request) -> Response:
        limits = get_ingest_settings(request).ingest
        body, write_key = await _read_authorized_call(request, limits.max_event_bytes)
        _admit(request, write_key, 1)
        try:
            event = normalize(
                body.value,
                call_type=call_type,
                received_at=datetime.now(UTC),
                may_contain_nul=body.may_contain_nul,
            )
        except InvalidEvent as exc:
            EVENTS_REJECTED.labels(call_type.value, exc.reason).inc()
            raise IngestError(400, exc.reason, str(exc), errors=exc.as_dict()) from None
        await _publish(get_publisher(request), [event], limits.retry_after_s)
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


@router.post("/batch", summary="Batch of calls")
@router.post("/import", summary="Batch of calls (Segment's alias of /v1/batch)")
async def batch(request: Request) -> Response:
    """Accept the valid calls of ``{"batch": [...]}``; report the invalid ones by index.

    A neighbour's error never drops a valid event: the answer is 200 with
    ``rejected`` listing each bad index, or 400 when no event was valid.
    """
    limits = get_ingest_settings(request).ingest
    parsed, write_key = await _read_authorized_call(request, limits.max_batch_bytes)
    body = parsed.value
    calls = body.get("batch") if isinstance(body, dict) else None
    if not isinstance(calls, list) or not calls:
        raise IngestError(
            400,
            "invalid_batch",
            "send a non-empty list of calls in `batch`",
            errors=[{"field": "batch", "message": "must be a non-empty list"}],
        )
    _admit(request, write_key, len(calls))
    received_at = datetime.now(UTC)
    sent_at = body.get("sentAt")
    max_event_bytes = limits.max_event_bytes
    accepted: list[CustomerEvent] = []
    rejected: list[dict[str, Any]] = []
    for index, raw in enumerate(calls):
        try:
            if len(orjson.dumps(raw)) > max_event_bytes:
                raise InvalidEvent("too_large", [])
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
            errors = exc.as_dict() or [
                {
                    "field": "body",
                    "message": f"an event may be at most {limits.max_event_bytes} bytes",
                }
            ]
            rejected.append({"index": index, "error": exc.reason, "errors": errors})
    if accepted:
        await _publish(get_publisher(request), accepted, limits.retry_after_s)
    status = 200 if accepted else 400
    return json_response(
        {"success": bool(accepted), "accepted": len(accepted), "rejected": rejected},
        status_code=status,
    )


async def _ingest_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IngestError)
    return json_response(exc.body, exc.status, exc.headers)


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = create_service_app(
        title="Tenure ingest",
        description="Segment-compatible tracking API. Events are answered 200 only once "
        "the broker acknowledged them.",
        version="1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.write_keys = TokenDigests(settings.ingest.write_key_digests)
    app.state.rate_limiter = settings.ingest.rate_limiter()
    app.state.max_body_bytes = None  # the routes read bodies under limits of their own
    app.add_exception_handler(IngestError, _ingest_error)
    app.include_router(router)
    app.openapi = partial(documented_openapi, app)  # type: ignore[method-assign]
    return app
