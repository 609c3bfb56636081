"""What the console's pages show and take: a section of a page read from one service,
and the forms' fields (validated here, so errors are shown next to the field)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from services.console.runtime import UpstreamError


@dataclass(slots=True)
class Section:
    """One part of a page, read from one service: its data, or why it is missing (a
    page shows what the other services answered when one is down)."""

    data: Any = None
    error: str = ""
    #: the service answered 404: nothing of this kind (no loyalty account, no list yet)
    missing: bool = False

    @classmethod
    def of(cls, result: Any) -> Section:
        if isinstance(result, UpstreamError):
            if result.status == 404:
                return cls(missing=True)
            return cls(error=f"{result.service}: {result.detail}")
        if isinstance(result, BaseException):
            raise result
        return cls(data=result)


async def sections(*reads: Awaitable[Any]) -> list[Section]:
    """The parts of a page, read at once: each the service's answer or why it failed."""
    results = await asyncio.gather(*reads, return_exceptions=True)
    return [Section.of(result) for result in results]


@dataclass(slots=True)
class FieldErrors:
    """Errors to show next to a form's fields, by field name (``""``: the whole form)."""

    by_field: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, message: str) -> None:
        self.by_field.setdefault(name, []).append(message)

    def __bool__(self) -> bool:
        return bool(self.by_field)

    def get(self, name: str) -> list[str]:
        return self.by_field.get(name, [])

    def gathered(self, name: str) -> FieldErrors:
        """Every message under the one field ``name`` (a form with one big text area)."""
        return FieldErrors({name: [m for ms in self.by_field.values() for m in ms]})

    @classmethod
    def from_problem(cls, exc: UpstreamError, fields: dict[str, str]) -> FieldErrors:
        """The service's 422 ``errors`` [{loc, msg}], each under the form field its
        ``loc`` names (``fields`` maps the location's first name after ``body`` to a
        field); the rest, and the ``detail`` when no error names a field, under ``""``."""
        found = cls()
        for error in exc.errors:
            loc = [str(part) for part in error.get("loc", [])]
            if loc and loc[0] == "body":
                loc = loc[1:]
            name = fields.get(loc[0], "") if loc else ""
            where = ".".join(loc[1:]) if name else ".".join(loc)
            message = str(error.get("msg", ""))
            found.add(name, f"{where}: {message}" if where else message)
        if not found:
            found.add("", exc.detail)
        return found

    @classmethod
    def from_refused_save(cls, exc: UpstreamError, fields: dict[str, str]) -> FieldErrors:
        """A save the service refused: 409 (the id is taken) next to ``id``, 422 as
        :meth:`from_problem`; any other failure is raised again."""
        if exc.status == 409:
            return cls({"id": [exc.detail]})
        if exc.status == 422:
            return cls.from_problem(exc, fields)
        raise exc


def parse_json_object(text: str, errors: FieldErrors, name: str) -> dict[str, Any] | None:
    """A JSON object typed in a form, or an error next to its field."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        errors.add(name, f"not JSON: {exc}")
        return None
    if not isinstance(value, dict):
        errors.add(name, "must be a JSON object ({…})")
        return None
    return value


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
