"""Period arithmetic in Python agrees with itself (and with SQL's, through the
integration tests that compare the two)."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from services.metrics.periods import period_start, shift_period

kinds = st.sampled_from(["day", "week", "month"])
days = st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1))


@given(kinds, days, st.integers(-30, 30))
def test_shift_is_reversible_and_lands_on_a_period(kind: str, day: date, n: int) -> None:
    start = period_start(kind, day)
    assert start <= day
    assert period_start(kind, start) == start
    moved = shift_period(kind, start, n)
    assert period_start(kind, moved) == moved
    assert shift_period(kind, moved, -n) == start
    assert (moved > start) == (n > 0) and (moved == start) == (n == 0)


@given(days)
def test_weeks_start_on_monday_and_months_on_the_first(day: date) -> None:
    assert period_start("week", day).weekday() == 0
    assert period_start("month", day).day == 1
    assert period_start("day", day) == day
