"""What ingest's OpenAPI document says about bodies, answers and the write key.

The routes read their bodies themselves (the size limit, the decoding, orjson,
one validation per event), so FastAPI cannot infer these schemas: the models
here only document. They describe the Segment spec loosely, as ingest reads it
(any extra field is kept); what the schema cannot say (``userId`` or
``anonymousId`` is required, NUL characters are refused, the time range) the
400 answer names.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from shared.events.customer_events import MAX_ID_LENGTH, EventType

_Id = str | int
_JSON_OBJECT = "a free-form JSON object"


class _Call(BaseModel):
    model_config = ConfigDict(extra="allow")

    userId: _Id | None = Field(default=None, description="userId or anonymousId is required")
    anonymousId: _Id | None = None
    messageId: _Id | None = Field(
        default=None, description=f"the idempotency key (at most {MAX_ID_LENGTH} characters)"
    )
    timestamp: str | None = Field(default=None, description="ISO 8601, from 1970 to 2100")
    sentAt: str | None = Field(default=None, description="ISO 8601; corrects the clock skew")
    context: dict[str, Any] | None = Field(default=None, description=_JSON_OBJECT)
    integrations: dict[str, Any] | None = Field(default=None, description=_JSON_OBJECT)
    writeKey: str | None = Field(default=None, description="when not sent as HTTP Basic")


class TrackCall(_Call):
    event: str = Field(description="the action's name")
    properties: dict[str, Any] | None = Field(default=None, description=_JSON_OBJECT)


class IdentifyCall(_Call):
    traits: dict[str, Any] | None = Field(default=None, description=_JSON_OBJECT)


class PageCall(_Call):
    name: str | None = None
    properties: dict[str, Any] | None = Field(default=None, description=_JSON_OBJECT)


class ScreenCall(PageCall):
    pass


class GroupCall(_Call):
    groupId: _Id
    traits: dict[str, Any] | None = Field(default=None, description=_JSON_OBJECT)


class AliasCall(_Call):
    previousId: _Id


class BatchItem(_Call):
    """One call of a batch: any of the above with its ``type``."""

    type: EventType
    event: str | None = None
    name: str | None = None
    groupId: _Id | None = None
    previousId: _Id | None = None
    properties: dict[str, Any] | None = Field(default=None, description=_JSON_OBJECT)
    traits: dict[str, Any] | None = Field(default=None, description=_JSON_OBJECT)


class Batch(BaseModel):
    model_config = ConfigDict(extra="allow")

    batch: list[BatchItem] = Field(min_length=1)
    sentAt: str | None = Field(default=None, description="applies to calls without their own")
    writeKey: str | None = None
    context: dict[str, Any] | None = None


class Accepted(BaseModel):
    success: Literal[True]
    messageId: str


class FieldProblem(BaseModel):
    field: str
    message: str


class Rejection(BaseModel):
    index: int
    error: str
    errors: list[FieldProblem]


class BatchAnswer(BaseModel):
    """200 when some calls were accepted; 400 when none was."""

    success: bool
    accepted: int
    rejected: list[Rejection]


class ErrorAnswer(BaseModel):
    success: Literal[False]
    error: str = Field(description="a stable code: invalid_json, unauthorized, rate_limited, …")
    detail: str
    errors: list[FieldProblem] | None = None
    limit_bytes: int | None = Field(default=None, description="413: the limit passed")
    retry_after_s: int | None = Field(default=None, description="429: as Retry-After says")
    accepted: str | None = Field(default=None, description="415: the accepted encodings")


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


def _responses(batch: bool) -> dict[str, Any]:
    error = _ref(ErrorAnswer)
    return {
        "200": {
            "description": "every accepted event is stored (acks=all)",
            "content": _json(_ref(BatchAnswer if batch else Accepted)),
        },
        "400": {
            "description": "not JSON, an invalid call (`errors` names the fields), a corrupt "
            "gzip/deflate stream"
            + ("; or no valid call in the batch (rejected by index)" if batch else ""),
            "content": _json({"anyOf": [error, _ref(BatchAnswer)]} if batch else error),
        },
        "401": {
            "description": "no write key, or a wrong one",
            "headers": {"WWW-Authenticate": _header('Basic realm="tenure"')},
            "content": _json(error),
        },
        "413": {"description": "the body is over the limit once inflated", "content": _json(error)},
        "415": {
            "description": "a Content-Encoding or Content-Type ingest cannot read",
            "headers": {"Accept-Encoding": _header("gzip, deflate")},
            "content": _json(error),
        },
        "429": {
            "description": "the write key's rate limit is exhausted",
            "headers": {"Retry-After": _header("seconds")},
            "content": _json(error),
        },
        "503": {
            "description": "the broker did not acknowledge in time; nothing was stored",
            "headers": {"Retry-After": _header("seconds")},
            "content": _json(error),
        },
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
        ErrorAnswer,
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
    app.openapi_schema = document
    return document
