"""What ingest's OpenAPI document says about bodies, answers and the write key.

The routes read their bodies themselves, so the bodies and success answers are
added here from :mod:`services.ingest.schemas`; every error answer is a problem
(``application/problem+json``, :class:`shared.http.problems.Problem`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.ingest.schemas import (
    Accepted,
    AliasCall,
    Batch,
    BatchAnswer,
    GroupCall,
    IdentifyCall,
    PageCall,
    ScreenCall,
    TrackCall,
)
from shared.http.openapi import add_shared_answers
from shared.http.problems import MEDIA_TYPE

_BODIES: dict[str, type[BaseModel]] = {
    "track": TrackCall,
    "identify": IdentifyCall,
    "page": PageCall,
    "screen": ScreenCall,
    "group": GroupCall,
    "alias": AliasCall,
    "batch": Batch,
    "import": Batch,
}
_REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


def _problem(description: str, **headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {MEDIA_TYPE: {"schema": {"$ref": _REF.format(model="Problem")}}},
    }
    if headers:
        answer["headers"] = {name: _header(text) for name, text in headers.items()}
    return answer


def _responses(batch: bool) -> dict[str, Any]:
    return {
        "200": {
            "description": "every accepted event is stored (acks=all)",
            "content": _json(_ref(BatchAnswer if batch else Accepted)),
        },
        "400": _problem(
            "not JSON, an invalid call (`errors` names the fields), a corrupt gzip/deflate "
            "stream"
            + (
                "; or no valid call in the batch (`errors`, their `loc` starting "
                "`body, batch, <index>`)"
                if batch
                else ""
            )
        ),
        "401": _problem(
            "no write key, or a wrong one", **{"WWW-Authenticate": 'Basic realm="tenure"'}
        ),
        "413": _problem("the body is over the limit once inflated (`limit_bytes`)"),
        "415": _problem(
            "a Content-Encoding or Content-Type ingest cannot read",
            **{"Accept-Encoding": "gzip, deflate"},
        ),
        "429": _problem(
            "the write key's rate limit is exhausted (`retry_after_s`)",
            **{"Retry-After": "seconds"},
        ),
        "503": _problem(
            "the broker did not acknowledge in time; nothing was stored",
            **{"Retry-After": "seconds"},
        ),
    }


def documented_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with the tracking bodies, answers and the write key added."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    models: list[type[BaseModel]] = [
        *dict.fromkeys(_BODIES.values()),
        Accepted,
        BatchAnswer,
    ]
    _, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template=_REF
    )
    components = document.setdefault("components", {})
    components.setdefault("schemas", {}).update(definitions.get("$defs", {}))
    components["securitySchemes"] = {
        "writeKey": {
            "type": "http",
            "scheme": "basic",
            "description": "the write key as the username, an empty password "
            "(or `writeKey` in the body)",
        }
    }
    for name, body in _BODIES.items():
        operation = document["paths"][f"/v1/{name}"]["post"]
        operation["requestBody"] = {"required": True, "content": _json(_ref(body))}
        operation["responses"] = _responses(batch=body is Batch)
        operation["security"] = [{"writeKey": []}, {}]
    app.openapi_schema = add_shared_answers(document)
    return app.openapi_schema
