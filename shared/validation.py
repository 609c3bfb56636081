"""One input validator for every service: what PostgreSQL, JSON and UTF-8 cannot hold.

A request that carries one of these used to reach asyncpg (or ``orjson``) and fail
with a 500; with these types it is a 422 that names the field:

- a NUL character (``\\u0000``): neither ``text`` nor ``jsonb`` stores one;
- a lone surrogate (``\\ud800``): not encodable as UTF-8;
- NaN or ±Infinity: not JSON, and poison for every sum and comparison after it;
- a date before 1970 or from 2100 on: outside what any Tenure timeline means (and
  ``9999-12-31`` made a date-series query run for minutes).

Use the annotated types on fields (``SafeStr``, ``FiniteFloat``, ``BoundedDatetime``,
``BoundedDate``, ``SafeJson``, ``Int32``), or derive a body from :class:`SafeModel`,
which checks every string, key, float and date it holds, at any depth, once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    JsonValue,
    WithJsonSchema,
    model_validator,
)

#: the first year a date may have, and the first it may not
MIN_YEAR = 1970
END_YEAR = 2100
#: the largest PostgreSQL ``integer``
INT32_MAX = 2**31 - 1

_D = TypeVar("_D", bound=date)


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored, or None."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000), which cannot be stored"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (such as \\ud800), which is not valid Unicode"
    return None


def number_problem(value: float) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number (not NaN or Infinity)"
    return None


def date_problem(value: date) -> str | None:
    if not MIN_YEAR <= value.year < END_YEAR:
        return f"must be a date from {MIN_YEAR} to {END_YEAR - 1}"
    return None


def value_problem(value: object, where: str = "") -> tuple[str, str] | None:
    """The first place in ``value`` (a model, mapping, list or scalar) holding what cannot
    be stored, and why; None when there is none."""
    if isinstance(value, str):
        problem = text_problem(value)
        return None if problem is None else (where, problem)
    if isinstance(value, bool | int) or value is None:
        return None
    if isinstance(value, float):
        problem = number_problem(value)
        return None if problem is None else (where, problem)
    if isinstance(value, date):  # datetime too
        problem = date_problem(value)
        return None if problem is None else (where, problem)
    if isinstance(value, BaseModel):
        return _first(((n, getattr(value, n)) for n in type(value).model_fields), where)
    if isinstance(value, Mapping):
        for key in value:
            if isinstance(key, str) and (problem := text_problem(key)) is not None:
                return (where, problem)  # in a key: the mapping holds it
        return _first(((str(k), v) for k, v in value.items()), where)
    if isinstance(value, list | tuple | set | frozenset):
        return _first(((str(i), v) for i, v in enumerate(value)), where)
    return None


def _first(items: Iterable[tuple[str, object]], where: str) -> tuple[str, str] | None:
    for key, item in items:
        found = value_problem(item, f"{where}.{key}" if where else key)
        if found is not None:
            return found
    return None


def message(found: tuple[str, str]) -> str:
    where, problem = found
    return f"`{where}` {problem}" if where else f"the value {problem}"


def _safe_text(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _finite(value: float) -> float:
    problem = number_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _bounded_date(value: _D) -> _D:
    problem = date_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_text(value: Any) -> Any:
    """Only ISO 8601 text (or a date already): pydantic's lax mode would read a number,
    or a string of one (``?to=9.6e-270``), as seconds since 1970."""
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DAY.match(value):
        return value
    raise ValueError("must be an ISO 8601 date (YYYY-MM-DD…)")


def _safe_json(value: Any) -> Any:
    found = value_problem(value)
    if found is not None:
        raise ValueError(message(found))
    return value


SafeStr = Annotated[str, AfterValidator(_safe_text)]
"""Text with no NUL and no lone surrogate."""
FiniteFloat = Annotated[float, AfterValidator(_finite)]
"""A float that is neither NaN nor ±Infinity."""
#: the years allowed, as the OpenAPI documents say it (a generator such as Schemathesis
#: then sends only dates that are accepted)
YEAR_PATTERN = "^(19[7-9][0-9]|20[0-9][0-9])-"
BoundedDatetime = Annotated[
    datetime,
    BeforeValidator(_iso_text),
    AfterValidator(_bounded_date),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": YEAR_PATTERN}),
]
"""A datetime in [1970, 2100)."""
BoundedDate = Annotated[
    date,
    BeforeValidator(_iso_text),
    AfterValidator(_bounded_date),
    WithJsonSchema({"type": "string", "format": "date", "pattern": YEAR_PATTERN}),
]
"""A date in [1970, 2100)."""
SafeJson = Annotated[JsonValue, AfterValidator(_safe_json)]
"""A JSON value whose strings, keys and numbers can all be stored."""
Int32 = Annotated[int, Field(ge=-(2**31), le=INT32_MAX)]
"""An integer a PostgreSQL ``integer`` holds."""


def utc_bounds() -> tuple[datetime, datetime]:
    """The first instant allowed and the first refused (for range checks in SQL)."""
    return datetime(MIN_YEAR, 1, 1, tzinfo=UTC), datetime(END_YEAR, 1, 1, tzinfo=UTC)


class SafeModel(BaseModel):
    """A request body whose every string, key, float and date, at any depth, can be
    stored (see the module doc); a 422 naming the first that cannot."""

    @model_validator(mode="after")
    def _refuse_unstorable(self) -> Self:
        found = value_problem(self)
        if found is not None:
            raise ValueError(message(found))
        return self
