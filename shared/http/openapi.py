"""Every error answer in a service's OpenAPI document is a problem (RFC 9457).

Routes document their own answers (``responses=problems(404, 409)``); this adds the
ones the shared middleware and dependencies give, to every operation they apply to:
400 ``invalid_character`` (a NUL in the URL) or ``invalid_query`` (a parameter given
twice) where an operation has parameters, 400 where it takes a body (not JSON), 404
where it has a path parameter, 413 where it takes a body (the body cap), 401 where
it is secured, 422 where FastAPI validates. Then every answer of status 400 or more
documented as JSON is rewritten to ``application/problem+json`` with the ``Problem``
schema, FastAPI's own 422 (``HTTPValidationError``) included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from pydantic.json_schema import models_json_schema

from shared.http.problems import MEDIA_TYPE, FieldError, Problem

_REF = {"$ref": "#/components/schemas/Problem"}


def _answer(description: str) -> dict[str, Any]:
    return {"description": description, "content": {MEDIA_TYPE: {"schema": _REF}}}


def _as_problem(response: dict[str, Any]) -> None:
    content = response.get("content")
    if not content:
        response["content"] = {MEDIA_TYPE: {"schema": _REF}}
        return
    if "application/json" in content and MEDIA_TYPE not in content:
        content.pop("application/json")
        content[MEDIA_TYPE] = {"schema": _REF}


def add_shared_answers(document: dict[str, Any]) -> dict[str, Any]:
    for path in document.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if operation.get("parameters"):
                responses.setdefault(
                    "400", _answer("a NUL character in the URL, or a query parameter given twice")
                )
            if "requestBody" in operation:
                responses.setdefault("400", _answer("the body is not JSON (or not UTF-8)"))
            if any(p.get("in") == "path" for p in operation.get("parameters", ())):
                responses.setdefault("404", _answer("nothing has that id"))
            if "requestBody" in operation:
                responses.setdefault("413", _answer("the body is over the service's body cap"))
            if operation.get("security"):
                responses.setdefault("401", _answer("no credentials, or wrong ones"))
            for status, response in responses.items():
                if status[:1] in {"4", "5"}:
                    _as_problem(response)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    _, definitions = models_json_schema(
        [(Problem, "serialization"), (FieldError, "serialization")],
        ref_template="#/components/schemas/{model}",
    )
    for name, schema in definitions.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    for unused in ("HTTPValidationError", "ValidationError"):
        if not _referenced(document, unused):
            schemas.pop(unused, None)
    return document


def _referenced(document: dict[str, Any], name: str) -> bool:
    return f'"#/components/schemas/{name}"'.encode() in orjson.dumps(document)


def with_shared_answers(openapi: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Wrap FastAPI's ``app.openapi`` (which caches the document it builds)."""
    done: list[dict[str, Any]] = []

    def build() -> dict[str, Any]:
        if not done:
            done.append(add_shared_answers(openapi()))
        return done[0]

    return build
