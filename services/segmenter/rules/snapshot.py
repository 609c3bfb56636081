"""What the Python predicate reads about one customer: a frozen copy of their rows.

A snapshot mirrors the segmenter tables for one ``customer_id``: the ``profiles``
row, its ``event_stats`` rows, the ``event_rollups`` rows the active segments
read, and its ``memberships``. Datetimes must be timezone-aware.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class EventStatView:
    """One ``event_stats`` row: all-time count, value sum, first and last occurrence."""

    count: int
    value_sum: float
    first_at: datetime
    last_at: datetime


RollupKey = tuple[str, str]
"""``(event_name, dimension)``; dimension ``''`` counts all events of the name."""
DayTotals = tuple[int, float]
"""``(count, value_sum)`` of one rollup row."""


@dataclass(frozen=True, slots=True)
class ProfileSnapshot:
    """One customer's profile, event statistics, rollups and memberships."""

    customer_id: str
    first_seen_at: datetime
    last_seen_at: datetime
    traits: Mapping[str, Any] = field(default_factory=dict)
    event_stats: Mapping[str, EventStatView] = field(default_factory=dict)
    rollups: Mapping[RollupKey, Mapping[date, DayTotals]] = field(default_factory=dict)
    memberships: frozenset[str] = frozenset()
    churn_risk: float | None = None
    predicted_ltv: float | None = None
    rfm_recency: int | None = None
    rfm_frequency: int | None = None
    rfm_monetary: int | None = None
    rfm_tier: str | None = None
    loyalty_tier: str | None = None
