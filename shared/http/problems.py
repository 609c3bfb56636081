"""One error body for every service: RFC 9457 problem details.

Routes raise the typed errors below (or FastAPI's ``HTTPException``); one set of
handlers, installed by :func:`shared.http.app.create_service_app`, turns each into
``application/problem+json``::

    {"type": "urn:tenure:problem:not_found", "title": "Not found", "status": 404,
     "detail": "no segment 'vip'", "request_id": "…"}

A 422 adds ``errors``: ``[{"loc": [...], "msg": "...", "type": "..."}]``, one per
field, as FastAPI's validation reports them. Other extension members (``limit_bytes``,
``retry_after_s``…) go in as keyword arguments.

ApiError                  (TenureError)
├── BadRequest        400
├── Unauthorized      401 (WWW-Authenticate: Bearer)
├── Forbidden         403
├── NotFound          404
├── Conflict          409
├── TooLarge          413
├── UnsupportedMedia  415
├── Invalid           422 (``loc``: where in the request)
├── RateLimited       429 (Retry-After)
└── Unavailable       503 (Retry-After)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Send

from shared.errors import TenureError
from shared.logging import request_id_var

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:tenure:problem:"


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, with the request id and, on a 422, the field errors."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="`urn:tenure:problem:<code>`, stable for clients to match on")
    title: str
    status: int
    detail: str
    request_id: str | None = None
    errors: list[FieldError] | None = None


class ApiError(TenureError):
    """An answer other than success, raised anywhere below a route."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.instance_code = code or self.code
        self.headers = dict(headers or {})
        self.extensions = extensions


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"

    def __init__(self, detail: str, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kwargs)


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class TooLarge(ApiError):
    status = 413
    code = "too_large"


class UnsupportedMedia(ApiError):
    status = 415
    code = "unsupported_media_type"


class Invalid(ApiError):
    """422; ``loc`` says where in the request (``("body", "rule")``), as FastAPI's do."""

    status = 422
    code = "invalid"

    def __init__(
        self, detail: str, *, loc: Sequence[str | int] | None = None, **kwargs: Any
    ) -> None:
        if loc is not None:
            kwargs.setdefault("errors", [{"loc": list(loc), "msg": detail, "type": self.code}])
        super().__init__(detail, **kwargs)


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"


class Unavailable(ApiError):
    status = 503
    code = "unavailable"


def problem_body(status: int, detail: str, *, code: str | None = None, **extensions: Any) -> bytes:
    """The serialised problem; also for middleware that answers before any route."""
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + (code or _default_code(status)),
        "title": _title(status),
        "status": status,
        "detail": detail,
        "request_id": request_id_var.get(),
    }
    body.update(extensions)
    try:
        return orjson.dumps(body)
    except TypeError:  # an echoed value orjson cannot write (an int over 64 bits)
        body.pop("errors", None)
        return orjson.dumps(body)


def problem_response(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> Response:
    return Response(
        problem_body(status, detail, code=code, **extensions),
        status_code=status,
        headers=dict(headers or {}),
        media_type=MEDIA_TYPE,
    )


def asgi_problem_start(status: int, body: bytes) -> dict[str, Any]:
    """The ``http.response.start`` message for a problem body, for pure ASGI middleware."""
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
        ],
    }


async def send_asgi_problem(
    send: Send, status: int, body: bytes, *, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Answer a problem body from pure ASGI middleware (start, then the whole body)."""
    start = asgi_problem_start(status, body)
    start["headers"].extend(headers)
    await send(start)
    await send({"type": "http.response.body", "body": body})


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=problems(404, 409)`` on a route: documents those answers as problems."""
    return {status: {"model": Problem, "description": _title(status)} for status in statuses}


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _invalid_request)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return problem_response(
        exc.status, exc.detail, code=exc.instance_code, headers=exc.headers, **exc.extensions
    )


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else _title(exc.status_code)
    extensions: dict[str, Any] = {}
    if not isinstance(exc.detail, str) and exc.detail is not None:
        extensions["errors"] = jsonable_encoder(exc.detail)
    return problem_response(exc.status_code, detail, headers=exc.headers, **extensions)


async def _invalid_request(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 as a problem. Echoed inputs are dropped: an echoed NaN, Infinity or
    over-long integer could not be serialised, and the client has its own request."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type"))}
        for e in exc.errors()
    ]
    first = errors[0] if errors else None
    detail = (
        f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        if first
        else "the request is not valid"
    )
    return problem_response(422, detail, code="invalid", errors=errors)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def _default_code(status: int) -> str:
    return _CODES.get(status, "error")
