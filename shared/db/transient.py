"""Which database errors are worth retrying: the same work may succeed a moment later."""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

#: serialization failure, deadlock, the server shutting down or not ready, lost connections
TRANSIENT_STATES = frozenset(
    {"40001", "40P01", "57P01", "57P02", "57P03", "08000", "08003", "08006"}
)


def is_transient_db_error(exc: BaseException) -> bool:
    """Database unreachable, or a serialization / deadlock conflict.

    Statements come through SQLAlchemy (its ``DBAPIError`` wraps the driver's error)
    or straight from asyncpg, so both kinds are read.
    """
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    if isinstance(exc, ConnectionError | OSError | asyncpg.PostgresConnectionError):
        return True
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return code in TRANSIENT_STATES
