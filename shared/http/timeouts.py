"""A statement cancelled by the database's ``statement_timeout`` is a 503, not a 500.

Every session has a statement timeout (:func:`shared.db.engine.create_engine`); a
request whose query runs past it gets SQLSTATE 57014 (``query_canceled``), through
SQLAlchemy (a ``DBAPIError`` around the driver's error) or straight from asyncpg
(:func:`shared.db.engine.driver_connection`). Either way the answer is a
``503 unavailable`` problem with ``Retry-After``: the service is up, this read was too
heavy for now. Installed once, by :func:`shared.http.app.create_service_app`.
"""

from __future__ import annotations

import logging

import asyncpg
from fastapi import FastAPI, Request
from sqlalchemy.exc import DBAPIError
from starlette.responses import Response

from shared.http.problems import Unavailable, problem_response

log = logging.getLogger("tenure.http")

QUERY_CANCELED = "57014"
RETRY_AFTER_S = 5


def is_statement_timeout(exc: BaseException) -> bool:
    """``exc`` (or the driver error it wraps) is a statement the server cancelled."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, asyncpg.QueryCanceledError):
            return True
        code = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if code == QUERY_CANCELED:
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


async def _database_error(request: Request, exc: Exception) -> Response:
    if not is_statement_timeout(exc):
        raise exc  # answered as a 500 by the request context middleware
    log.warning("statement timeout on %s %s", request.method, request.url.path)
    error = Unavailable(
        "the query took longer than the service allows; narrow it (a shorter date range) "
        "or try again later",
        headers={"Retry-After": str(RETRY_AFTER_S)},
        retry_after_s=RETRY_AFTER_S,
    )
    return problem_response(
        error.status,
        error.detail,
        code=error.instance_code,
        headers=error.headers,
        **error.extensions,
    )


def install_timeout_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(asyncpg.QueryCanceledError, _database_error)
