"""Request ids, access logs, latency metrics and the 500 answer, as one pure ASGI middleware.

An unhandled exception is answered here, inside the request's context, rather
than by Starlette's ``ServerErrorMiddleware``: that one runs outside every user
middleware (so the request id is gone by then) and re-raises after answering,
which makes uvicorn close the keep-alive connection under the client's next
request. Here the 500 carries the request id, the exception is logged once, and
the connection stays usable.
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.types import Message, Receive, Scope, Send

from shared.http.asgi import HttpMiddleware
from shared.http.metrics import REQUEST_SECONDS
from shared.http.problems import problem_body, send_asgi_problem
from shared.logging import request_id_var

log = logging.getLogger("tenure.access")

_UNTIMED = frozenset({"/metrics", "/healthz", "/readyz"})


class RequestContextMiddleware(HttpMiddleware):
    """Gives each request an id (``X-Request-ID`` in or a new one), echoes it, times it."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        started_response = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if started_response:
                raise  # too late to answer: the server ends the response its own way
            status = 500
            body = problem_body(500, "an unexpected error occurred")
            await send_asgi_problem(send_with_id, 500, body)
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
