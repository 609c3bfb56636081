"""Every metrics route answers a declared model, and every error it documents is a
problem (issue 19), without any server: the app is built, never started."""

from __future__ import annotations

from typing import Any, get_args, get_origin

from fastapi.routing import APIRoute
from pydantic import BaseModel

from services.metrics.app import create_app
from services.metrics.settings import MetricsSettings

SKIPPED_STATUSES = {204}


def _routes() -> list[APIRoute]:
    app = create_app(MetricsSettings())
    return [r for r in app.routes if isinstance(r, APIRoute)]


def _is_model(annotation: Any) -> bool:
    """A pydantic model, or a list of them (not ``dict[str, Any]``)."""
    if get_origin(annotation) is list:
        (annotation,) = get_args(annotation)
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def test_every_json_route_has_a_response_model() -> None:
    missing = [
        f"{sorted(r.methods or ())} {r.path}"
        for r in _routes()
        if r.path.startswith("/v1/")
        and r.status_code not in SKIPPED_STATUSES
        and not _is_model(r.response_model)
    ]
    assert missing == []


def test_documented_errors_are_problems() -> None:
    document = create_app(MetricsSettings()).openapi()
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if status.startswith("4"):
                    assert list(answer["content"]) == ["application/problem+json"], (
                        method,
                        path,
                        status,
                    )
    objectives = document["paths"]["/v1/objectives"]["post"]["responses"]
    assert {"401", "409", "422"} <= set(objectives)
