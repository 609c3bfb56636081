"""The answers every service gives from shared/http, written into its OpenAPI document.

Routes document their own answers; these come from the shared middleware and
dependencies, so they are added to every operation they apply to: 400
``invalid_character`` (a NUL in the URL) where an operation has parameters, 404
where it has a path parameter (the resource it names may not exist), 413 where it
takes a body (the body cap), 401 where it is secured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    "required": ["error", "detail"],
}
_TOO_LARGE = {
    "type": "object",
    "properties": {"detail": {"type": "string"}, "limit_bytes": {"type": "integer"}},
    "required": ["detail"],
}


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def add_shared_answers(document: dict[str, Any]) -> dict[str, Any]:
    for path in document.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if operation.get("parameters"):
                responses.setdefault(
                    "400", _answer("a NUL character in the URL (invalid_character)", _ERROR)
                )
            if any(p.get("in") == "path" for p in operation.get("parameters", ())):
                responses.setdefault("404", _answer("nothing has that id", _DETAIL))
            if "requestBody" in operation:
                responses.setdefault(
                    "413", _answer("the body is over TENURE_HTTP_MAX_BODY_BYTES", _TOO_LARGE)
                )
            if operation.get("security"):
                responses.setdefault("401", _answer("no credentials, or wrong ones", _DETAIL))
    return document


def with_shared_answers(openapi: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Wrap FastAPI's ``app.openapi`` (which caches the document it builds)."""
    done: list[dict[str, Any]] = []

    def build() -> dict[str, Any]:
        if not done:
            done.append(add_shared_answers(openapi()))
        return done[0]

    return build
