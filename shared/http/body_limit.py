"""A cap on request bodies, for services whose routes let FastAPI read the body.

FastAPI reads a whole JSON body into memory before validating it, so without a
cap an admin API takes a 20 MB body (and parses it). The cap is
``settings.http.max_body_bytes`` of the app (``TENURE_HTTP_MAX_BODY_BYTES``, 1 MiB
by default); an app that reads its bodies itself under limits of its own (ingest)
sets ``app.state.max_body_bytes = None``. A declared ``Content-Length`` over the
cap is answered 413 before any of the body is read; a streamed body is cut off
as soon as it passes the cap.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import Message, Receive, Scope, Send

from shared.http.asgi import HttpMiddleware
from shared.http.problems import problem_body, send_asgi_problem

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def _limit_of(app: Any) -> int | None:
    state = getattr(app, "state", None)
    if state is not None and hasattr(state, "max_body_bytes"):
        return state.max_body_bytes  # type: ignore[no-any-return]
    http = getattr(getattr(state, "settings", None), "http", None)
    return getattr(http, "max_body_bytes", DEFAULT_MAX_BODY_BYTES)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimitMiddleware(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = _limit_of(scope.get("app"))
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            body = problem_body(413, _too_large(limit), limit_bytes=limit)
            await send_asgi_problem(send, 413, body, headers=[(b"connection", b"close")])
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises an HTTPException met while reading the body
                    raise HTTPException(413, _too_large(limit))
            return message

        await self.app(scope, limited, send)


def _too_large(limit: int) -> str:
    return f"the request body exceeds the limit of {limit} bytes"
