"""How compiled SQL rules read a customer's ``event_stats`` and ``event_rollups`` rows.

A rule leaf needs a few numbers about one event name: its all-time count, value
sum or last instant (``event_stats``), or the count, value sum or first day of a
rollup window (``event_rollups``). Two ways to get them, with equal results:

- :class:`CorrelatedLookups`: one correlated scalar subquery per number. Nothing to
  join, so the predicate drops into any ``WHERE`` over ``profiles``; each number
  costs an index lookup per profile. Good for one rule over few rows (previews).
- :class:`SharedLookups`: every number about one event name comes from a single
  lookup per profile, shared by every leaf and every rule compiled with it. The
  all-time row is one ``LEFT JOIN`` of ``event_stats``; all windows of one
  ``(event, dimension)`` are one ``LEFT JOIN LATERAL`` aggregate with a ``FILTER``
  per window. The statement must select ``FROM`` :meth:`SharedLookups.source`.
  Five sweep segments reading ``Order Completed`` seven times make two lookups.

Every number is SQL NULL when the customer has no row: the rules decide what
NULL means (a count of 0, no last instant).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Protocol, cast

from sqlalchemy import (
    Date,
    FromClause,
    Numeric,
    Table,
    and_,
    func,
    literal,
    literal_column,
    select,
    true,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.sql.elements import ColumnElement

from services.segmenter.models import EventRollup, EventStat, Profile

profiles = cast(Table, Profile.__table__)
event_stats = cast(Table, EventStat.__table__)
event_rollups = cast(Table, EventRollup.__table__)


class EventLookups(Protocol):
    """The numbers rule leaves read about one customer's events (NULL: no row)."""

    def stat_count(self, event: str) -> ColumnElement[Any]: ...

    def stat_value_sum(self, event: str) -> ColumnElement[Any]:
        """As ``numeric``, so that sums compare exactly."""
        ...

    def stat_last_at(self, event: str) -> ColumnElement[datetime]: ...

    def window_count(self, event: str, dimension: str, after: date) -> ColumnElement[Any]:
        """The sum of the counts of the rollup days after ``after``."""
        ...

    def window_value_sum(self, event: str, dimension: str, after: date) -> ColumnElement[Any]:
        """The sum of the value sums of the rollup days after ``after``, as ``numeric``."""
        ...

    def window_first_day(self, event: str, dimension: str, after: date) -> ColumnElement[date]:
        """The first rollup day after ``after``."""
        ...


def _stat_rows(event: str) -> ColumnElement[bool]:
    return and_(
        event_stats.c.customer_id == profiles.c.customer_id, event_stats.c.event_name == event
    )


def _window_rows(event: str, dimension: str, after: date) -> ColumnElement[bool]:
    return and_(
        event_rollups.c.customer_id == profiles.c.customer_id,
        event_rollups.c.event_name == event,
        event_rollups.c.dimension == dimension,
        event_rollups.c.day > literal(after, Date),
    )


class CorrelatedLookups:
    """One correlated scalar subquery per number."""

    def _scalar(self, column: ColumnElement[Any], where: ColumnElement[bool]) -> Any:
        return select(column).where(where).correlate(profiles).scalar_subquery()

    def stat_count(self, event: str) -> ColumnElement[Any]:
        return cast(ColumnElement[Any], self._scalar(event_stats.c.count, _stat_rows(event)))

    def stat_value_sum(self, event: str) -> ColumnElement[Any]:
        value = sql_cast(event_stats.c.value_sum, Numeric)
        return cast(ColumnElement[Any], self._scalar(value, _stat_rows(event)))

    def stat_last_at(self, event: str) -> ColumnElement[datetime]:
        return cast(ColumnElement[datetime], self._scalar(event_stats.c.last_at, _stat_rows(event)))

    def window_count(self, event: str, dimension: str, after: date) -> ColumnElement[Any]:
        rows = _window_rows(event, dimension, after)
        return cast(ColumnElement[Any], self._scalar(func.sum(event_rollups.c.count), rows))

    def window_value_sum(self, event: str, dimension: str, after: date) -> ColumnElement[Any]:
        total = func.sum(sql_cast(event_rollups.c.value_sum, Numeric))
        return cast(ColumnElement[Any], self._scalar(total, _window_rows(event, dimension, after)))

    def window_first_day(self, event: str, dimension: str, after: date) -> ColumnElement[date]:
        first = func.min(event_rollups.c.day)
        return cast(ColumnElement[date], self._scalar(first, _window_rows(event, dimension, after)))


class SharedLookups:
    """One lookup per event name (and per rollup dimension), shared by every leaf.

    Compile every rule first, then select ``FROM`` :meth:`source`: the joins are
    built from what the compiled leaves asked for.
    """

    def __init__(self) -> None:
        self._stats: dict[str, str] = {}
        #: (event, dimension) -> (alias, {(aggregate, after): column})
        self._windows: dict[tuple[str, str], tuple[str, dict[tuple[str, date], str]]] = {}

    def _stat(self, event: str, column: str, type_: Any) -> ColumnElement[Any]:
        alias = self._stats.setdefault(event, f"lookup_stat_{len(self._stats)}")
        return literal_column(f"{alias}.{column}", type_)

    def stat_count(self, event: str) -> ColumnElement[Any]:
        return self._stat(event, "count", event_stats.c.count.type)

    def stat_value_sum(self, event: str) -> ColumnElement[Any]:
        return sql_cast(self._stat(event, "value_sum", event_stats.c.value_sum.type), Numeric)

    def stat_last_at(self, event: str) -> ColumnElement[datetime]:
        return self._stat(event, "last_at", event_stats.c.last_at.type)

    def _window(
        self, event: str, dimension: str, after: date, aggregate: str, type_: Any
    ) -> ColumnElement[Any]:
        key = (event, dimension)
        if key not in self._windows:
            self._windows[key] = (f"lookup_window_{len(self._windows)}", {})
        alias, columns = self._windows[key]
        column = columns.setdefault((aggregate, after), f"{aggregate}_{len(columns)}")
        return literal_column(f"{alias}.{column}", type_)

    def window_count(self, event: str, dimension: str, after: date) -> ColumnElement[Any]:
        return self._window(event, dimension, after, "count", Numeric())

    def window_value_sum(self, event: str, dimension: str, after: date) -> ColumnElement[Any]:
        return self._window(event, dimension, after, "value_sum", Numeric())

    def window_first_day(self, event: str, dimension: str, after: date) -> ColumnElement[date]:
        return self._window(event, dimension, after, "first_day", Date())

    def source(self) -> FromClause:
        """``profiles`` joined with every lookup the compiled rules asked for."""
        joined: FromClause = profiles
        for event, alias in self._stats.items():
            stat = event_stats.alias(alias)
            on = and_(stat.c.customer_id == profiles.c.customer_id, stat.c.event_name == event)
            joined = joined.outerjoin(stat, on)
        for (event, dimension), (alias, columns) in self._windows.items():
            joined = joined.outerjoin(self._window_source(event, dimension, alias, columns), true())
        return joined

    @staticmethod
    def _window_source(
        event: str, dimension: str, alias: str, columns: dict[tuple[str, date], str]
    ) -> FromClause:
        """One aggregate over the customer's rollup days of the widest window, with a
        ``FILTER`` per (aggregate, window)."""
        day = event_rollups.c.day
        measures = {
            "count": event_rollups.c.count,
            "value_sum": sql_cast(event_rollups.c.value_sum, Numeric),
        }
        selected = []
        for (aggregate, after), name in columns.items():
            inside = day > literal(after, Date)
            if aggregate == "first_day":
                selected.append(func.min(day).filter(inside).label(name))
            else:
                selected.append(func.sum(measures[aggregate]).filter(inside).label(name))
        widest = min(after for _, after in columns)
        rows = _window_rows(event, dimension, widest)
        return select(*selected).where(rows).correlate(profiles).lateral(alias)
