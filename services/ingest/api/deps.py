"""The typed runtime dependency and the reading of an authorised call's body."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.ingest.auth import key_from_authorization
from services.ingest.body import Body, call_headers, parse_json, read_limited
from services.ingest.normalize import FieldError
from services.ingest.runtime import Runtime, unauthorized
from shared.http.deps import runtime_dependency

RuntimeDep = Annotated[Runtime, Depends(runtime_dependency(Runtime))]


async def read_authorized_call(request: Request, runtime: Runtime, limit: int) -> tuple[Body, str]:
    """The parsed body and the write key that authorised it (from HTTP Basic, else
    ``writeKey`` in the body)."""
    headers = call_headers(request)
    header_key = key_from_authorization(headers.authorization)
    if header_key is not None:
        runtime.check_key(header_key)
    parsed = parse_json(await read_limited(request, limit, headers))
    if header_key is not None:
        return parsed, header_key
    body = parsed.value
    body_key = body.get("writeKey") if isinstance(body, dict) else None
    if body_key is None:
        raise unauthorized(
            "send the write key as the HTTP Basic username (empty password) or as writeKey "
            "in the body"
        )
    if not isinstance(body_key, str):
        raise unauthorized("the write key is not valid")
    runtime.check_key(body_key)
    return parsed, body_key


def field_errors(
    errors: list[FieldError], reason: str, *, at: tuple[str | int, ...] = ("body",)
) -> list[dict[str, object]]:
    """Ingest's field errors as the problem's ``errors``: ``loc`` from ``at`` and the
    field's dotted path, ``type`` the reason (the metric label)."""
    return [
        {
            "loc": [*at] if e.field == "body" else [*at, *e.field.split(".")],
            "msg": e.message,
            "type": reason,
        }
        for e in errors
    ]
