"""Request ids, access logs and latency metrics as one pure ASGI middleware."""

from __future__ import annotations

import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.http.metrics import REQUEST_SECONDS
from shared.logging import request_id_var

log = logging.getLogger("tenure.access")

_UNTIMED = frozenset({"/metrics", "/healthz", "/readyz"})


class RequestContextMiddleware:
    """Gives each request an id (``X-Request-ID`` in or a new one), echoes it, times it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if template not in _UNTIMED:
                REQUEST_SECONDS.labels(scope["method"], template, str(status)).observe(elapsed)
            if status >= 500:
                log.error("%s %s -> %d", scope["method"], scope["path"], status)
            request_id_var.reset(token)


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and 0 < len(value) <= 128:
            return bytes(value).decode("latin-1")
    return None
