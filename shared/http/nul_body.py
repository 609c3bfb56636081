"""Refuse a NUL character anywhere in a request body with a 422.

PostgreSQL stores no NUL, in ``text`` nor in ``jsonb``: a body holding one (the
dispatcher's customer ids, topic names, preference keys, test-send contexts; the
metrics' experiment control, objectives) failed in asyncpg with a 500 (found by
Schemathesis). :mod:`shared.http.nul` refuses NUL in the URL; a body model that
derives from :class:`NulFree` refuses it in the body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Self

from pydantic import BaseModel, model_validator


def nul_path(value: object, where: str = "") -> str | None:
    """Where the first NUL character in ``value`` is (``""``: the value itself), or None."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return _first(((name, getattr(value, name)) for name in fields), where)
    if isinstance(value, Mapping):
        if any(isinstance(key, str) and "\x00" in key for key in value):
            return where  # in a key: the mapping holds it
        return _first(((str(k), v) for k, v in value.items()), where)
    if isinstance(value, list | tuple):
        return _first(((str(i), v) for i, v in enumerate(value)), where)
    return None


def _first(items: Iterable[tuple[str, object]], where: str) -> str | None:
    for key, item in items:
        found = nul_path(item, f"{where}.{key}" if where else key)
        if found is not None:
            return found
    return None


def nul_message(where: str) -> str:
    place = f"`{where}`" if where else "the value"
    return f"{place} contains a NUL character (\\u0000), which cannot be stored"


class NulFree(BaseModel):
    """A request body with no NUL character in any string, key or nested model."""

    @model_validator(mode="after")
    def _refuse_nul(self) -> Self:
        where = nul_path(self)
        if where is not None:
            raise ValueError(nul_message(where))
        return self
