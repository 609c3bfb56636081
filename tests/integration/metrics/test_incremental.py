"""The incremental activity counts (active, retained, cohorts) equal a recomputation
from scratch, whatever the order of event times and the cut into batches: hypothesis
draws the histories, the handler applies them on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.metrics.consumer import MetricsBatchHandler
from services.metrics.periods import period_start, shift_period
from shared.db.engine import create_engine
from shared.db.migrations import upgrade
from shared.events.customer_events import TOPIC, CustomerEvent, EventType
from shared.kafka.consumer import Record
from shared.settings import DatabaseSettings
from tenure.services import SERVICES
from tests.conftest import NewDatabase

START = datetime(2025, 12, 20, tzinfo=UTC)
TABLES = (
    "metrics.customers, metrics.active_periods, metrics.period_counts, "
    "metrics.cohort_counts, metrics.daily_totals, metrics.processed_messages, "
    "metrics.first_day_totals"
)


@pytest.fixture(scope="module")
async def database(new_database: NewDatabase) -> str:
    url = await new_database()
    await asyncio.to_thread(
        upgrade, script_location=SERVICES["metrics"].migrations_dir, database_url=url
    )
    return url


histories = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 80), st.booleans()), min_size=1, max_size=60
)


def _expected(events: list[tuple[int, int, bool]]) -> tuple[dict[Any, Any], dict[Any, Any]]:
    active: dict[tuple[str, date], set[int]] = defaultdict(set)
    first: dict[int, date] = {}
    for customer, offset, _ in events:
        day = (START + timedelta(days=offset)).date()
        first[customer] = min(first.get(customer, day), day)
        for kind in ("day", "week", "month"):
            active[(kind, period_start(kind, day))].add(customer)
    counts = {}
    for (kind, period), who in active.items():
        before = active.get((kind, shift_period(kind, period, -1)), set())
        counts[(kind, period)] = (len(who), len(who & before))
    # periods where nobody is active but someone was before: retained 0, active 0
    cohorts: dict[tuple[str, date, date], int] = defaultdict(int)
    for (kind, period), who in active.items():
        if kind == "day":
            continue
        for customer in who:
            cohorts[(kind, period_start(kind, first[customer]), period)] += 1
    return counts, dict(cohorts)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=histories, batch=st.integers(1, 9))
async def test_counts_match_a_recomputation(
    database: str, events: list[tuple[int, int, bool]], batch: int
) -> None:
    dsn = database.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn)
    await conn.execute(f"TRUNCATE {TABLES}")
    engine = create_engine(DatabaseSettings(url=database, pool_size=1))
    handler = MetricsBatchHandler(
        engine=engine,
        purchase_event="Order Completed",
        goals=frozenset({"Order Completed"}),
        attribution_window=timedelta(hours=1),
    )
    try:
        records = [
            Record(
                TOPIC,
                0,
                n,
                None,
                CustomerEvent(
                    type=EventType.TRACK,
                    message_id=f"m{n}",
                    user_id=f"c{customer}",
                    event="Order Completed" if order else "Viewed",
                    properties={"revenue": 10},
                    timestamp=START + timedelta(days=offset, hours=1),
                    received_at=START,
                ),
                0,
            )
            for n, (customer, offset, order) in enumerate(events)
        ]
        for start in range(0, len(records), batch):
            await handler(records[start : start + batch])
        await handler(records[:batch])  # a redelivered batch changes nothing
        counts, cohorts = _expected(events)
        rows = await conn.fetch("SELECT kind, period, active, retained FROM metrics.period_counts")
        got = {(r[0], r[1]): (r[2], r[3]) for r in rows if r[2] or r[3]}
        assert got == {k: v for k, v in counts.items() if v != (0, 0)}
        rows = await conn.fetch("SELECT kind, cohort, period, customers FROM metrics.cohort_counts")
        assert {(r[0], r[1], r[2]): r[3] for r in rows if r[3]} == cohorts
        # per first day: customers, buyers, repeat buyers, orders
        first: dict[int, date] = {}
        orders: dict[int, int] = defaultdict(int)
        for customer, offset, order in events:
            day = (START + timedelta(days=offset)).date()
            first[customer] = min(first.get(customer, day), day)
            orders[customer] += order
        expected: dict[date, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for customer, day in first.items():
            row = expected[day]
            row[0] += 1
            row[1] += orders[customer] >= 1
            row[2] += orders[customer] >= 2
            row[3] += orders[customer]
        rows = await conn.fetch(
            "SELECT first_day, customers, buyers, repeat_buyers, orders "
            "FROM metrics.first_day_totals"
        )
        got_firsts = {r[0]: list(r[1:]) for r in rows if any(r[1:])}
        assert got_firsts == dict(expected)
    finally:
        await engine.dispose()
        await conn.close()
