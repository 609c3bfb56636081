"""Periods of the customer KPIs: a day, an ISO week (from Monday) or a calendar month,
each named by its first day; the same arithmetic as SQL's ``metrics.period_start`` and
``metrics.period_shift`` (migration 0001)."""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

__all__ = ["period_start", "shift_period"]


@lru_cache(maxsize=65_536)  # a batch asks for the same few hundred days again and again
def period_start(kind: str, day: date) -> date:
    if kind == "week":
        return day - timedelta(days=day.weekday())
    if kind == "month":
        return day.replace(day=1)
    return day


@lru_cache(maxsize=65_536)
def shift_period(kind: str, period: date, n: int) -> date:
    if kind == "day":
        return period + timedelta(days=n)
    if kind == "week":
        return period + timedelta(days=7 * n)
    month = period.month - 1 + n
    return date(period.year + month // 12, month % 12 + 1, 1)
