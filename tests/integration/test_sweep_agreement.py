"""The set-based sweep makes the same membership changes as the event path.

On generated rules and populations (the strategies of the SQL/Python agreement
test), each rule becomes a segment ``g0``, ``g1``, … and a segment ``reader``
reads two of them, so that the sweep runs two dependency levels. Customers start
with drawn memberships. :func:`membership_sql.apply_segments` over every customer
must then leave exactly the memberships :func:`evaluate_customer` computes, queue
exactly one ``segment.changes`` message per change, and set each customer's timer
to the Python next due instant. And the consumer's read-back of the same rows
(:func:`load_snapshots`, only what the segments read) must decide as the full
snapshot does.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.segmenter import membership_sql as msql
from services.segmenter.catalog import ActiveSegment, SegmentCatalog
from services.segmenter.consumer import load_snapshots
from services.segmenter.evaluate import evaluate_customer
from services.segmenter.fold import WorkingProfile
from services.segmenter.models import Membership, membership_timers
from services.segmenter.rules import Node, ProfileSnapshot, dump_rule
from shared.db import timers as durable_timers
from shared.db.tables import table_of
from tests.integration.test_rules_sql_agreement import (
    Database,
    _rows,
    database,
    scenarios,
    score_columns,
)

__all__ = ["database"]  # the fixture, imported for this module's tests

memberships = table_of(Membership)
timers = membership_timers


def _catalog(rules: list[Node]) -> SegmentCatalog:
    definitions: dict[str, dict[str, Any]] = {f"g{i}": dump_rule(r) for i, r in enumerate(rules)}
    second = "g1" if len(rules) > 1 else "g0"
    definitions["reader"] = {
        "kind": "all",
        "rules": [
            {"kind": "segment", "segment_id": "g0"},
            {"kind": "not", "rule": {"kind": "segment", "segment_id": second}},
        ],
    }
    return SegmentCatalog(ActiveSegment.compile(s, 3, d) for s, d in definitions.items())


async def _sweep(
    engine: AsyncEngine, catalog: SegmentCatalog, population: list[ProfileSnapshot], now: datetime
) -> tuple[
    dict[str, frozenset[str]],
    list[dict[str, Any]],
    dict[str, datetime],
    dict[str, ProfileSnapshot],
]:
    """Memberships, queued changes and timers after sweeping everyone (rolled back)."""
    async with engine.connect() as conn:
        try:
            for table, rows in _rows(population).items():
                if rows:
                    await conn.execute(insert(table), rows)
            loaded = await _event_path_snapshots(conn, catalog, population, now)
            await msql.bound_plans_to_the_scope(conn)  # as the sweeper does
            await msql.create_scope(conn)
            # every customer due now, so that the sweep claims them all
            await durable_timers.schedule(
                conn, table=timers, rows=[(p.customer_id, now) for p in population]
            )
            claimed = await msql.claim_due_timers(conn, now=now, limit=len(population))
            assert claimed == len(population)
            await msql.analyze_scope(conn)
            await msql.apply_segments(conn, catalog.segments, now=now, cause="time")
            found: dict[str, set[str]] = {p.customer_id: set() for p in population}
            for segment_id, customer_id in await conn.execute(
                select(memberships.c.segment_id, memberships.c.customer_id)
            ):
                found[customer_id].add(segment_id)
            queued = [
                orjson.loads(value)
                for value in await conn.scalars(
                    text("SELECT value FROM segmenter.outbox ORDER BY id")
                )
            ]
            due = dict(
                (await conn.execute(select(timers.c.customer_id, timers.c.due_at))).tuples().all()
            )
            return {c: frozenset(s) for c, s in found.items()}, queued, due, loaded
        finally:
            await conn.rollback()


async def _event_path_snapshots(
    conn: AsyncConnection, catalog: SegmentCatalog, population: list[ProfileSnapshot], now: datetime
) -> dict[str, ProfileSnapshot]:
    """The snapshots the consumer reads back for these customers: only the statistics
    and rollup rows some segment of ``catalog`` reads."""
    working = {
        p.customer_id: WorkingProfile(
            p.customer_id, p.first_seen_at, p.last_seen_at, traits=dict(p.traits), stored=True
        )
        for p in population
    }
    scores = {p.customer_id: score_columns(p) for p in population}
    return await load_snapshots(conn, catalog, working, scores, now)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios(), data=st.data())
def test_the_sweep_changes_what_the_event_path_would(
    database: Database, scenario: tuple[datetime, list[Node], list[ProfileSnapshot]], data: Any
) -> None:
    now, rules, drawn = scenario
    catalog = _catalog(rules)
    ours = [s.id for s in catalog.segments]
    population = [
        # the drawn memberships of other segments ("vip", "churned") stay as they are
        replace(p, memberships=p.memberships | data.draw(st.frozensets(st.sampled_from(ours))))
        for p in drawn
    ]

    after, queued, due, loaded = database.run(_sweep(database.engine, catalog, population, now))
    for p in population:  # the event path reads back what it needs to decide alike
        assert evaluate_customer(catalog, loaded[p.customer_id], now) == evaluate_customer(
            catalog, p, now
        ), p.customer_id

    expected_changes = []
    for position, segment in enumerate(catalog.segments):
        for p in population:
            result = evaluate_customer(catalog, p, now)
            if segment.id in result.entered:
                expected_changes.append((position, p.customer_id, segment.id, "entered"))
            if segment.id in result.exited:
                expected_changes.append((position, p.customer_id, segment.id, "exited"))
    for p in population:
        result = evaluate_customer(catalog, p, now)
        expected = (p.memberships | set(result.entered)) - set(result.exited)
        assert after[p.customer_id] == expected, p.customer_id
        assert due.get(p.customer_id) == result.next_due, p.customer_id
    assert [
        (c["customerId"], c["segmentId"], c["change"], c["segmentVersion"], c["cause"])
        for c in queued
    ] == [(c, s, change, 3, "time") for _, c, s, change in sorted(expected_changes)]
    assert all(datetime.fromisoformat(c["at"]) == now.astimezone(UTC) for c in queued)


async def _sweep_due(engine: AsyncEngine, catalog: SegmentCatalog, now: datetime) -> dict[str, Any]:
    async with engine.connect() as conn:
        try:
            await conn.execute(
                insert(timers),
                [
                    {"customer_id": "ghost", "due_at": now - timedelta(hours=1)},
                    {"customer_id": "c00", "due_at": now - timedelta(hours=1)},
                ],
            )
            for table, rows in _rows([ProfileSnapshot("c00", now, now)]).items():
                if rows:
                    await conn.execute(insert(table), rows)
            await msql.bound_plans_to_the_scope(conn)
            await msql.create_scope(conn)
            assert await msql.claim_due_timers(conn, now=now, limit=10) == 2
            await msql.apply_segments(conn, catalog.time_dependent, now=now, cause="time")
            return dict(
                (await conn.execute(select(timers.c.customer_id, timers.c.due_at))).tuples().all()
            )
        finally:
            await conn.rollback()


def test_the_sweep_drops_the_timer_of_a_customer_without_a_profile(database: Database) -> None:
    """A timer left behind without its profile would otherwise be swept every second."""
    now = datetime(2026, 1, 5, 12, tzinfo=UTC)
    catalog = SegmentCatalog(
        [ActiveSegment.compile("fresh", 1, {"kind": "first_seen", "newer_than_days": 1})]
    )
    due = database.run(_sweep_due(database.engine, catalog, now))
    assert due == {"c00": now + timedelta(days=1, microseconds=1)}


def test_the_sweep_drops_due_timers_when_no_segment_depends_on_time(database: Database) -> None:
    """Left behind by a deleted segment, they would otherwise be claimed again at once."""
    now = datetime(2026, 1, 5, 12, tzinfo=UTC)
    catalog = SegmentCatalog(
        [
            ActiveSegment.compile(
                "pro", 1, {"kind": "trait", "trait": "plan", "op": "eq", "value": "pro"}
            )
        ]
    )
    assert database.run(_sweep_due(database.engine, catalog, now)) == {}
