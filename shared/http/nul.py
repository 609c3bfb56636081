"""Refuse a NUL character in a request's path or query string, for every service.

PostgreSQL's text cannot hold one, so a path id like ``/v1/profiles/a%00b`` reached
asyncpg and failed with a 500. No Tenure identifier may contain NUL (ingest refuses
it in events too), so such a request is answered 400 before any route sees it.

A query string that names a parameter twice (``?journey_id=a&journey_id=b``) or has a
nameless one (``?=x``) is a 400 too: no Tenure parameter is a list, and FastAPI would
silently keep one of the values (found by Schemathesis's negative data).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send

from shared.http.asgi import HttpMiddleware
from shared.http.problems import problem_body, send_asgi_problem


class RefuseNulMiddleware(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            body = problem_body(
                400,
                "the URL contains a NUL character (%00), which no id may hold",
                code="invalid_character",
            )
            await send_asgi_problem(send, 400, body)
            return
        query = scope.get("query_string", b"")
        if query and (problem := query_problem(query)) is not None:
            body = problem_body(400, problem, code="invalid_query")
            await send_asgi_problem(send, 400, body)
            return
        await self.app(scope, receive, send)


def query_problem(query: bytes) -> str | None:
    """Why a query string is refused (a parameter named twice, or without a name)."""
    seen: set[str] = set()
    for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if not name:
            return "the query string has a parameter without a name"
        if name in seen:
            return f"the query parameter {name!r} is given more than once"
        seen.add(name)
    return None
