"""Refuse a NUL character in a request's path or query string, for every service.

PostgreSQL's text cannot hold one, so a path id like ``/v1/profiles/a%00b`` reached
asyncpg and failed with a 500. No Tenure identifier may contain NUL (ingest refuses
it in events too), so such a request is answered 400 before any route sees it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from shared.http.problems import asgi_problem_start, problem_body


class RefuseNulMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"")
        ):
            body = problem_body(
                400,
                "the URL contains a NUL character (%00), which no id may hold",
                code="invalid_character",
            )
            await send(asgi_problem_start(400, body))
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
