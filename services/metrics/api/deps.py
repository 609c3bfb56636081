"""What the metrics routes depend on beside `shared.http.admin.ADMIN`: the runtime, the
common parameters, the range check and a read snapshot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import Depends, Query
from fastapi import Path as PathParam

from services.metrics.runtime import Runtime
from shared.db.engine import driver_connection, snapshot
from shared.http.deps import runtime_dependency
from shared.http.problems import Invalid
from shared.validation import BoundedDate

RuntimeDep = Annotated[Runtime, Depends(runtime_dependency(Runtime))]
#: a journey version, as the events carry it (``ge=1``) and Postgres stores it (int4)
VersionP = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
FromQ = Annotated[
    BoundedDate | None, Query(alias="from", description="first day (UTC), inclusive; 1970–2099")
]
ToQ = Annotated[
    BoundedDate | None, Query(alias="to", description="last day (UTC), inclusive; 1970–2099")
]
#: the longest range of days a KPI (or the report) answers: ten years and a bit
MAX_DAYS = 3_700


def check_order(start: date | None, end: date | None) -> None:
    if start is not None and end is not None and start > end:
        raise Invalid(f"`from` ({start}) is after `to` ({end})", loc=("query", "from"))


def date_range(
    runtime: Runtime, start: date | None, end: date | None, default_days: int
) -> tuple[date, date]:
    """``from`` and ``to``, defaulting to the ``default_days`` up to today; a 422 when
    ``from`` is after ``to`` or the range spans over :data:`MAX_DAYS`."""
    end = end or runtime.clock().date()
    start = start or end - timedelta(days=default_days)
    check_order(start, end)
    if (end - start).days > MAX_DAYS:
        raise Invalid(f"the range may span at most {MAX_DAYS} days", loc=("query", "to"))
    return start, end


@asynccontextmanager
async def reading(runtime: Runtime) -> AsyncIterator[Any]:
    """The asyncpg connection of a read-only snapshot (one consistent view)."""
    async with snapshot(runtime.engine) as conn:
        yield await driver_connection(conn)
