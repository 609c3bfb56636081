"""The bodies and success answers of ingest's tracking API, for its OpenAPI document.

The routes read their bodies themselves (the size limit, the decoding, orjson,
one validation per event), so FastAPI cannot infer these schemas: the models
here only document. They describe the Segment spec loosely, as ingest reads it
(any extra field is kept); what the schema cannot say (``userId`` or
``anonymousId`` is required, NUL characters are refused, the time range) the
400 problem names. Success bodies are Segment's (``{"success": true, ...}``);
every error answer is a problem (:mod:`shared.http.problems`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
    """200: some calls were accepted (a batch with none valid is a 400 problem)."""

    success: Literal[True]
    accepted: int
    rejected: list[Rejection]
