"""Per-customer purchase summaries: the sufficient statistics of BG/NBD and Gamma-Gamma.

Conventions (those of Fader, Hardie & Lee 2005 and of the ``lifetimes`` package):

- Purchases on the same UTC calendar day form one purchase occasion (values summed, time
  of the day's first purchase), so an order split into several events counts once.
- The first occasion is the trial: ``frequency`` counts the *repeat* occasions only.
- ``recency`` is the time from the first to the last occasion (0 with no repeats), ``T``
  the time from the first occasion to ``now``; both in days, as floats.
- ``monetary`` is the mean value of the repeat occasions (0 with no repeats), because the
  Gamma-Gamma model is fitted on repeat spend.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

SECONDS_PER_DAY = 86_400.0

Purchase = tuple[datetime, float]
"""A purchase: its timezone-aware time and its value (e.g. revenue)."""


@dataclass(frozen=True, slots=True)
class CustomerSummary:
    """One customer's purchase history at a given ``now``; all times in days.

    Guarantees when built by :func:`summarise_customer`: ``frequency`` is a non-negative
    integer-valued float, ``0 <= recency <= T``, ``recency == 0`` when ``frequency == 0``,
    ``last_seen_days_ago >= 0``.
    """

    customer_id: str
    frequency: float
    recency: float
    T: float
    monetary: float
    last_seen_days_ago: float
    total_value: float | None = None
    """Sum of all purchase values, the first occasion included; None if unknown."""

    @property
    def occasions(self) -> int:
        """Number of purchase occasions, the first one included."""
        return int(self.frequency) + 1

    @property
    def mean_value(self) -> float:
        """Mean value per occasion, the first included (``monetary`` if total is unknown)."""
        return self.monetary if self.total_value is None else self.total_value / self.occasions

    @property
    def days_since_last_purchase(self) -> float:
        return self.T - self.recency


def _days(delta_seconds: float) -> float:
    return delta_seconds / SECONDS_PER_DAY


def _require_aware(moment: datetime, what: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {moment!r}")


def _utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def summarise_customer(
    customer_id: str,
    purchases: Iterable[Purchase],
    *,
    now: datetime,
    last_seen: datetime | None = None,
) -> CustomerSummary | None:
    """Summarise one customer's purchases as of ``now``.

    Purchases after ``now`` are ignored (clock skew, or scoring in the past). Returns None
    when no purchase remains. ``last_seen`` is the customer's last activity of any kind; the
    later of it and the last purchase gives ``last_seen_days_ago`` (ignored if after ``now``).
    Raises ValueError on naive datetimes or non-finite values.
    """
    _require_aware(now, "now")
    if last_seen is not None:
        _require_aware(last_seen, "last_seen")
    by_day: dict[date, float] = {}
    day_start: dict[date, datetime] = {}
    latest: datetime | None = None
    for at, value in purchases:
        _require_aware(at, "purchase time")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"purchase value must be finite, got {value!r}")
        if at > now:
            continue
        day = _utc_day(at)
        by_day[day] = by_day.get(day, 0.0) + value
        if day not in day_start or at < day_start[day]:
            day_start[day] = at
        if latest is None or at > latest:
            latest = at
    if latest is None:
        return None

    days = sorted(by_day)
    first, last = day_start[days[0]], day_start[days[-1]]
    repeat_values = [by_day[d] for d in days[1:]]
    frequency = len(repeat_values)
    seen = latest if last_seen is None or last_seen > now else max(last_seen, latest)
    T = _days((now - first).total_seconds())
    recency = _days((last - first).total_seconds())
    return CustomerSummary(
        customer_id=customer_id,
        frequency=float(frequency),
        recency=recency,
        T=T,
        monetary=sum(repeat_values) / frequency if frequency else 0.0,
        last_seen_days_ago=_days((now - seen).total_seconds()),
        total_value=sum(by_day.values()),
    )


def build_summaries(
    purchases_by_customer: Mapping[str, Iterable[Purchase]],
    *,
    now: datetime,
    last_seen: Mapping[str, datetime] | None = None,
) -> list[CustomerSummary]:
    """Summaries of every customer with at least one purchase at or before ``now``.

    Order follows ``purchases_by_customer``; see :func:`summarise_customer` for the rules.
    """
    seen = last_seen or {}
    out: list[CustomerSummary] = []
    for customer_id, purchases in purchases_by_customer.items():
        summary = summarise_customer(
            customer_id, purchases, now=now, last_seen=seen.get(customer_id)
        )
        if summary is not None:
            out.append(summary)
    return out
