"""The SQL and Python compilers of a rule agree, on generated rules and populations.

Hypothesis draws an instant ``now``, a rule tree and 5–20 profiles whose traits,
instants and rollup days cluster around the rule language's boundaries (cutoffs
± 1µs, window edges at UTC midnight, 1 == 1.0, 15-digit sums, odd date strings).
The profiles are written to a real PostgreSQL; the customers matched by
``compile_sql`` must be exactly those matched by ``compile_predicate``, and
``next_flip_sql`` must equal ``next_flip`` for every customer. Both ways of reading
event rows are checked: a correlated subquery per leaf, and lookups shared by all
the rules of one statement (as the sweep evaluates its segments).
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Select, Table, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.segmenter.models import Base, EventRollup, EventStat, Membership, Profile
from services.segmenter.offloop import execute_off_loop
from services.segmenter.rules import (
    SQL_FUNCTIONS_DDL,
    EventCountRule,
    EventStatView,
    EventValueRule,
    FirstSeenRule,
    LastEventRule,
    Node,
    ProfileSnapshot,
    TraitAge,
    TraitCompare,
    TraitContains,
    TraitEquals,
    TraitIn,
    compile_predicate,
    compile_sql,
    dimension_key,
    next_flip,
    next_flip_sql,
    parse_instant,
    parse_rule,
    walk,
)
from services.segmenter.rules.ast import MAX_DEPTH, rule_depth
from services.segmenter.rules.sql_lookups import SharedLookups
from shared.db.engine import async_url
from tests.conftest import NewDatabase

T = TypeVar("T")

profiles: Table = Profile.__table__  # type: ignore[assignment]
event_stats: Table = EventStat.__table__  # type: ignore[assignment]
event_rollups: Table = EventRollup.__table__  # type: ignore[assignment]
memberships: Table = Membership.__table__  # type: ignore[assignment]


# --- the database ------------------------------------------------------------------------


@dataclass
class Database:
    """One database with the segmenter tables, driven from a private event loop."""

    loop: asyncio.AbstractEventLoop
    engine: AsyncEngine

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)


async def _prepare(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE SCHEMA segmenter"))
        await conn.run_sync(Base.metadata.create_all)
        for ddl in SQL_FUNCTIONS_DDL:
            await conn.execute(text(ddl))


@pytest.fixture(scope="module")
def database(new_database: NewDatabase) -> Iterator[Database]:
    # A loop of our own (not pytest-asyncio's), so the sync hypothesis test can drive it.
    loop = asyncio.new_event_loop()
    try:
        url = loop.run_until_complete(new_database())
        engine = create_async_engine(async_url(url))
        loop.run_until_complete(_prepare(engine))
        yield Database(loop, engine)
        loop.run_until_complete(engine.dispose())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# --- strategies --------------------------------------------------------------------------
# Values come from small pools of edge cases; the population is drawn *after* the rules,
# from hints about what they compare with, so profiles land on the rules' boundaries.

BASE = datetime(2024, 3, 10, tzinfo=UTC)
NOW_OFFSETS = [
    timedelta(0),
    timedelta(microseconds=1),
    timedelta(hours=6, microseconds=250),
    timedelta(hours=23, minutes=59, seconds=59, microseconds=999_999),
]
DAYS = [0.5, 1, 1.5, 7, 14, 30]
WINDOWS = [1, 7, 30]
NEAR = [timedelta(0), timedelta(microseconds=1), timedelta(microseconds=-1)]
JITTERS = [*NEAR, timedelta(hours=1), timedelta(hours=-3), timedelta(days=1), timedelta(days=-2)]
DAY_OFFSETS = [-31, -30, -29, -8, -7, -6, -2, -1, 0, 1]
EVENTS = ["Order Completed", "Viewed"]
WHERE_VALUES: list[Any] = ["shoes", "hats", 1, True]
SEGMENTS = ["vip", "churned"]
TIERS = ["champions", "loyal", "lost"]
LOYALTY_TIERS = ["Member", "Gold"]
TRAITS = ["plan", "age", "tags", "signed_up_at", "meta"]
STRINGS = ["pro", "", "B", "é", "1", "2024-03-01"]
NUMBERS: list[Any] = [0, 1, 1.0, -0.0, 2.5, 0.30000000000000004, 10**23, 1e23]
SCALARS: list[Any] = [*STRINGS, *NUMBERS, True, False]
AMOUNTS = [0.0, 0.1, 0.2, 0.30000000000000004, 1 / 3, 2 / 3, 33.3, 100.0, -5.0]
THRESHOLDS: list[int | float] = [0, 0.3, 0.6, 1, 2, 33.3, 100, 1 / 3]
SCORES: dict[str, list[Any]] = {
    "churn_risk": [None, 0.0, 0.5, 0.7, 0.70000001, 1.0],
    "predicted_ltv": [None, 0.0, 100.5, 1e6],
    "rfm_recency": [None, 1, 3, 5],
    "rfm_frequency": [None, 1, 2, 5],
    "rfm_monetary": [None, 1, 4, 5],
}
BAD_DATES = [
    "2024-02-30", "2023-02-29", "2024-13-01", "2024-01-15T24:00", "not a date",
    " 2024-01-15", "2024-01-15T10:30:00+24:00", "0000-01-01", "2024-1-5",
]  # fmt: skip
ROLLUP_KEYS = [(e, "") for e in EVENTS] + [
    (e, dimension_key("category", v)) for e in EVENTS for v in WHERE_VALUES
]
MISSING = object()
"""A drawn trait value meaning: leave the trait out."""

DATE_FORMATS = [
    lambda t: t.isoformat(),
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    lambda t: f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond:06d}789z",
    lambda t: t.replace(tzinfo=None).isoformat(),
    lambda t: t.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(),
    lambda t: t.astimezone(timezone(timedelta(hours=-8))).strftime("%Y-%m-%d %H:%M:%S.%f-0800"),
    lambda t: t.astimezone(timezone(timedelta(hours=2))).strftime("%Y-%m-%dT%H:%M+02"),
    lambda t: t.date().isoformat(),
]


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each ``weight`` times as likely as a weight-1 one."""
    return st.sampled_from([s for weight, s in choices for _ in range(weight)]).flatmap(lambda s: s)


def instants(now: datetime, days: Iterable[float] = ()) -> st.SearchStrategy[datetime]:
    """Instants on or next to the cutoffs ``now - D``, mostly for the rule's own ``days``."""
    own = sorted(set(days))
    offsets = weighted(
        (2 if own else 0, st.sampled_from(own or [0])), (1, st.sampled_from([*DAYS, 0, 100]))
    )
    jitters = weighted((2, st.sampled_from(NEAR)), (1, st.sampled_from(JITTERS)))
    return st.builds(lambda d, j: now - timedelta(days=d) + j, offsets, jitters)


def date_strings(at: st.SearchStrategy[datetime]) -> st.SearchStrategy[str]:
    return st.builds(lambda t, fmt: fmt(t), at, st.sampled_from(DATE_FORMATS))


scalars = st.sampled_from(SCALARS)
rule_values = st.one_of(
    scalars,
    st.lists(scalars, min_size=1, max_size=2),
    st.dictionaries(st.sampled_from(["a", "b"]), scalars, min_size=1, max_size=2),
)
ops = st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte"])
any_trait = st.sampled_from([*TRAITS, "missing"])
orderable = st.sampled_from([*STRINGS, *NUMBERS]) | date_strings(instants(BASE))


@st.composite
def windowed(draw: st.DrawFn) -> dict[str, Any]:
    """``within_days`` / ``where`` fields of an event leaf (``where`` only with a window)."""
    within = draw(st.none() | st.sampled_from(WINDOWS))
    if within is None:
        return {}
    fields: dict[str, Any] = {"within_days": within}
    if draw(st.booleans()):
        fields["where"] = {"property": "category", "equals": draw(st.sampled_from(WHERE_VALUES))}
    return fields


def age_fields() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda older, days: {f"{'older' if older else 'newer'}_than_days": days},
        st.booleans(),
        st.sampled_from(DAYS),
    )


def trait_leaf(
    names: st.SearchStrategy[str], op: st.SearchStrategy[str], **value: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"kind": st.just("trait"), "trait": names, "op": op, **value})


LEAVES: list[st.SearchStrategy[dict[str, Any]]] = [
    trait_leaf(any_trait, st.sampled_from(["eq", "neq"]), value=rule_values),
    trait_leaf(
        st.sampled_from(["age", "plan", "signed_up_at"]),
        st.sampled_from(["gt", "gte", "lt", "lte"]),
        value=orderable,
    ),
    trait_leaf(any_trait, st.just("in"), value=st.lists(rule_values, min_size=1, max_size=3)),
    trait_leaf(st.sampled_from(["tags", "plan"]), st.just("contains"), value=scalars),
    trait_leaf(any_trait, st.just("exists"), value=st.booleans()),
    trait_leaf(
        st.sampled_from(["signed_up_at", "signed_up_at", "plan"]),
        st.sampled_from(["older_than", "newer_than"]),
        days=st.sampled_from(DAYS),
    ),
    st.builds(
        lambda e, op, n, w: {"kind": "event_count", "event": e, "op": op, "count": n, **w},
        st.sampled_from(EVENTS),
        ops,
        st.integers(0, 4),
        windowed(),
    ),
    st.builds(
        lambda e, agg, op, v, w: {
            "kind": "event_value",
            "event": e,
            "aggregate": agg,
            "op": op,
            "value": v,
            **w,
        },
        st.sampled_from(EVENTS),
        st.sampled_from(["sum", "avg"]),
        ops,
        st.sampled_from(THRESHOLDS),
        windowed(),
    ),
    st.builds(
        lambda e, age: {"kind": "last_event", "event": e, **age},
        st.none() | st.sampled_from(EVENTS),
        age_fields(),
    ),
    st.builds(lambda age: {"kind": "first_seen", **age}, age_fields()),
    st.builds(lambda s: {"kind": "segment", "segment_id": s}, st.sampled_from(SEGMENTS)),
    st.builds(
        lambda score, op, v: {"kind": "score", "score": score, "op": op, "value": v},
        st.sampled_from(sorted(SCORES)),
        st.sampled_from(["gt", "gte", "lt", "lte", "eq"]),
        st.sampled_from([0, 0.5, 0.7, 1, 3, 100.5, 2.5]),
    ),
    st.builds(
        lambda tiers: {"kind": "rfm_tier", "in": tiers},
        st.lists(st.sampled_from(TIERS), min_size=1, max_size=2, unique=True),
    ),
    st.builds(
        lambda tiers: {"kind": "loyalty_tier", "in": tiers},
        st.lists(st.sampled_from(LOYALTY_TIERS), min_size=1, max_size=2, unique=True),
    ),
]
leaves = weighted(*((1, leaf) for leaf in LEAVES))


def composites(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    some = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        st.builds(lambda rs: {"kind": "all", "rules": rs}, some),
        st.builds(lambda rs: {"kind": "any", "rules": rs}, some),
        st.builds(lambda r: {"kind": "not", "rule": r}, children),
    )


rules = (
    st.recursive(leaves, composites, max_leaves=6)
    .map(parse_rule)
    .filter(lambda r: rule_depth(r) <= MAX_DEPTH)
)


def variants(value: Any) -> list[Any]:
    """``value`` and values next to it: 1 / 1.0 / "1" / true, the next float, substrings, lists."""
    found = [value]
    if isinstance(value, bool):
        found += [int(value), not value]
    elif isinstance(value, int):
        found += [float(value), value + 1, value - 1, str(value)]
    elif isinstance(value, float):
        nearby = [math.nextafter(value, math.inf), math.nextafter(value, -math.inf)]
        found += [v for v in nearby if math.isfinite(v)] + [repr(value)]
        found += [int(value)] if value.is_integer() else []
    elif isinstance(value, str):
        found += [value + "x", value[:-1], value.upper(), f"a{value}b"]
    if not isinstance(value, list | dict):
        found += [[v] for v in found] + [["z", value], [[value]]]
    return found


@dataclass
class Hints:
    """What the rules compare with, so that the profiles can sit right on their boundaries."""

    days: set[float] = field(default_factory=set)
    windows: set[int] = field(default_factory=lambda: set(WINDOWS))
    values: dict[str, list[Any]] = field(default_factory=dict)
    amounts: set[float] = field(default_factory=set)
    counts: set[int] = field(default_factory=lambda: {1, 2, 3})
    rollup_keys: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def of(cls, rules: Iterable[Node]) -> Hints:
        hints = cls()
        for node in (n for rule in rules for n in walk(rule)):
            if isinstance(node, TraitAge | LastEventRule | FirstSeenRule):
                hints.days.add(node.days)
            elif isinstance(node, TraitEquals | TraitCompare | TraitContains):
                hints.values.setdefault(node.trait, []).extend(variants(node.value))
            elif isinstance(node, TraitIn):
                for value in node.value:
                    hints.values.setdefault(node.trait, []).extend(variants(value))
            elif isinstance(node, EventCountRule):
                hints.counts |= {max(node.count - 1, 1), max(node.count, 1), node.count + 1}
            elif isinstance(node, EventValueRule):
                t = float(node.value)
                hints.amounts |= {t, t / 2, t - 0.1, math.nextafter(t, math.inf)}
            if isinstance(node, EventCountRule | EventValueRule) and node.within_days:
                hints.windows.add(node.within_days)
                hints.rollup_keys |= {(node.event, node.dimension), (node.event, "")}
            if isinstance(node, TraitAge):
                hints.values.setdefault(node.trait, [])
        return hints


def snapshots(now: datetime, hints: Hints) -> st.SearchStrategy[ProfileSnapshot]:
    """Profiles (with an empty customer id) whose data sits on the rules' boundaries at ``now``."""
    at = instants(now, hints.days)
    today = now.date()
    rollup_days = {today + timedelta(days=d) for d in DAY_OFFSETS} | {
        today - timedelta(days=n - k) for n in hints.windows for k in (-1, 0, 1)
    }
    amounts = weighted(
        (2 if hints.amounts else 0, st.sampled_from(sorted(hints.amounts) or [0.0])),
        (1, st.sampled_from(AMOUNTS)),
    )
    counts = st.sampled_from(sorted(hints.counts))
    days = st.dictionaries(
        st.sampled_from(sorted(rollup_days)), st.tuples(counts, amounts), max_size=4
    )
    keys = weighted(
        (2 if hints.rollup_keys else 0, st.sampled_from(sorted(hints.rollup_keys) or ROLLUP_KEYS)),
        (1, st.sampled_from(ROLLUP_KEYS)),
    )
    anything = st.one_of(
        scalars,
        st.none(),
        st.lists(scalars, max_size=2),
        st.dictionaries(st.sampled_from(["a", "b"]), scalars, max_size=2),
    )
    usual = {
        "plan": st.sampled_from(STRINGS),
        "age": st.sampled_from(NUMBERS),
        "tags": st.lists(scalars, max_size=3),
        "signed_up_at": weighted((3, date_strings(at)), (1, st.sampled_from(BAD_DATES))),
        "meta": anything,
    }
    traits = {
        name: weighted(
            (3 if hints.values.get(name) else 0, st.sampled_from(hints.values.get(name) or [0])),
            (3 if name in hints.values else 1, strategy),
            (1, anything),
            (1, st.just(MISSING)),
        )
        for name, strategy in usual.items()
    }
    return st.builds(
        ProfileSnapshot,
        customer_id=st.just(""),
        first_seen_at=at,
        last_seen_at=at,
        traits=st.fixed_dictionaries(traits).map(
            lambda found: {k: v for k, v in found.items() if v is not MISSING}
        ),
        event_stats=st.dictionaries(
            st.sampled_from(EVENTS), st.builds(EventStatView, counts, amounts, at, at), max_size=2
        ),
        rollups=st.dictionaries(keys, days, max_size=3),
        memberships=st.frozensets(st.sampled_from(SEGMENTS)),
        rfm_tier=st.none() | st.sampled_from(TIERS),
        loyalty_tier=st.none() | st.sampled_from(LOYALTY_TIERS),
        **{name: st.sampled_from(values) for name, values in SCORES.items()},
    )


Scenario = tuple[datetime, list[Node], list[ProfileSnapshot]]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """An instant, 1-4 rules, and 5-20 customers c00, c01, … sitting on the rules' boundaries."""
    now = draw(st.sampled_from(NOW_OFFSETS).map(lambda offset: BASE + offset))
    drawn = draw(st.lists(rules, min_size=1, max_size=4))
    size = draw(st.sampled_from([5, 12, 20]))
    found = draw(st.lists(snapshots(now, Hints.of(drawn)), min_size=size, max_size=size))
    return now, drawn, [replace(p, customer_id=f"c{i:02d}") for i, p in enumerate(found)]


# --- the test ----------------------------------------------------------------------------


#: the snapshot's score fields, named as the ``profiles`` columns they mirror
SCORE_COLUMNS = tuple(
    f.name
    for f in fields(ProfileSnapshot)
    if f.name.startswith(("churn_", "predicted_", "rfm_", "loyalty_"))
)


def score_columns(p: ProfileSnapshot) -> dict[str, Any]:
    """The snapshot's scores, by their ``profiles`` column names."""
    return {name: getattr(p, name) for name in SCORE_COLUMNS}


def _rows(population: list[ProfileSnapshot]) -> dict[Table, list[dict[str, Any]]]:
    return {
        profiles: [
            {
                "customer_id": p.customer_id,
                "traits": dict(p.traits),
                "first_seen_at": p.first_seen_at,
                "last_seen_at": p.last_seen_at,
                **score_columns(p),
            }
            for p in population
        ],
        event_stats: [
            {
                "customer_id": p.customer_id,
                "event_name": name,
                "count": s.count,
                "value_sum": s.value_sum,
                "first_at": s.first_at,
                "last_at": s.last_at,
            }
            for p in population
            for name, s in p.event_stats.items()
        ],
        event_rollups: [
            {
                "customer_id": p.customer_id,
                "event_name": name,
                "dimension": dimension,
                "day": day,
                "count": count,
                "value_sum": value_sum,
            }
            for p in population
            for (name, dimension), days in p.rollups.items()
            for day, (count, value_sum) in days.items()
        ],
        memberships: [
            {
                "segment_id": segment_id,
                "customer_id": p.customer_id,
                "segment_version": 1,
                "entered_at": BASE,
            }
            for p in population
            for segment_id in p.memberships
        ],
    }


Evaluated = tuple[set[str], dict[str, bool], dict[str, datetime | None]]


async def _evaluate_in_sql(
    engine: AsyncEngine, rules: list[Node], now: datetime, population: list[ProfileSnapshot]
) -> tuple[list[Evaluated], list[Evaluated]]:
    """Per rule: the ids its WHERE selects, its value per row, its next flip per row; once
    with correlated lookups (a statement per rule) and once with shared lookups (one
    statement for all the rules)."""
    async with engine.connect() as conn:
        try:
            for table, rows in _rows(population).items():
                if rows:
                    await conn.execute(insert(table), rows)
            correlated = []
            for rule in rules:
                predicate = compile_sql(rule, now=now)
                matched = set(await conn.scalars(select(profiles.c.customer_id).where(predicate)))
                per_row = (
                    await conn.execute(
                        select(profiles.c.customer_id, predicate, next_flip_sql(rule, now=now))
                    )
                ).all()
                values = {customer_id: value for customer_id, value, _ in per_row}
                flips = {customer_id: flip for customer_id, _, flip in per_row}
                correlated.append((matched, values, flips))
                # built and compiled in a thread, run as SQL text (as the admin API does)
                off_loop = await execute_off_loop(conn, functools.partial(_matching, rule, now))
                assert set(off_loop.scalars()) == matched, rule
            return correlated, await _evaluate_shared(conn, rules, now)
        finally:
            await conn.rollback()


async def _evaluate_shared(
    conn: AsyncConnection, rules: list[Node], now: datetime
) -> list[Evaluated]:
    lookups = SharedLookups()
    predicates = [compile_sql(rule, now=now, lookups=lookups) for rule in rules]
    flips = [next_flip_sql(rule, now=now, lookups=lookups) for rule in rules]
    rows = (
        await conn.execute(
            select(profiles.c.customer_id, *predicates, *flips).select_from(lookups.source())
        )
    ).all()
    n = len(rules)
    shared = []
    for k in range(n):
        values = {row[0]: row[1 + k] for row in rows}
        matched = {customer_id for customer_id, value in values.items() if value}
        shared.append((matched, values, {row[0]: row[1 + n + k] for row in rows}))
    return shared


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_sql_and_python_agree(database: Database, scenario: Scenario) -> None:
    now, rules, population = scenario
    correlated, shared = database.run(_evaluate_in_sql(database.engine, rules, now, population))

    for results in (correlated, shared):
        for rule, (matched, values, flips) in zip(rules, results, strict=True):
            predicate = compile_predicate(rule)
            expected = {p.customer_id for p in population if predicate(p, now)}
            assert matched == expected, rule
            # the SQL value is never NULL: TRUE exactly for the matched rows
            assert values == {p.customer_id: p.customer_id in expected for p in population}, rule
            assert flips == {p.customer_id: next_flip(rule, p, now) for p in population}, rule


# --- focused: JSON comparisons and instant parsing over wide value spaces -------------------

text_values = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=4)
json_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([10**23, 1e23, 2**53 + 1, float(2**53), 0.1, -0.0, 5e-324]),
    text_values,
)
json_values = st.recursive(
    json_scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(text_values, c, max_size=3),
    max_leaves=5,
)


@st.composite
def comparisons(draw: st.DrawFn) -> tuple[list[Node], list[ProfileSnapshot]]:
    """Trait leaves on ``x`` and profiles whose ``x`` is often one of the leaves' values."""
    leaves = draw(
        st.lists(
            st.one_of(
                st.fixed_dictionaries({"op": st.sampled_from(["eq", "neq"]), "value": json_values}),
                st.fixed_dictionaries(
                    {
                        "op": st.sampled_from(["gt", "gte", "lt", "lte"]),
                        "value": json_scalars.filter(lambda v: not isinstance(v, bool)),
                    }
                ),
                st.fixed_dictionaries(
                    {"op": st.just("in"), "value": st.lists(json_values, min_size=1, max_size=3)}
                ),
                st.fixed_dictionaries({"op": st.just("contains"), "value": json_scalars}),
            ),
            min_size=1,
            max_size=6,
        )
    )
    seen = [leaf["value"] for leaf in leaves]
    seen += [v for leaf in leaves if leaf["op"] == "in" for v in leaf["value"]]
    near = st.sampled_from(seen).flatmap(lambda v: st.sampled_from(variants(v)))
    value = st.one_of(near, near, json_values, st.none(), st.lists(near, max_size=2))
    xs = draw(st.lists(value, min_size=1, max_size=10))
    rules = [parse_rule({"kind": "trait", "trait": "x", **leaf}) for leaf in leaves]
    population = [
        ProfileSnapshot(f"c{i:02d}", BASE, BASE, traits={} if x is None else {"x": x})
        for i, x in enumerate(xs)
    ]
    return rules, population


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=comparisons())
def test_trait_comparisons_agree_on_any_json(
    database: Database, case: tuple[list[Node], list[ProfileSnapshot]]
) -> None:
    rules, population = case
    results, _ = database.run(_evaluate_in_sql(database.engine, rules, BASE, population))
    for rule, (matched, _, _) in zip(rules, results, strict=True):
        predicate = compile_predicate(rule)
        assert matched == {p.customer_id for p in population if predicate(p, BASE)}, rule


def _digits(low: int, high: int, width: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: str(n).zfill(width)) | st.sampled_from(
        ["", "1", "123", "a"]
    )


instant_texts = st.one_of(
    st.builds(
        lambda y, mo, d, sep, h, mi, sec, frac, tz, tail: (
            f"{y}-{mo}-{d}{sep}{h}:{mi}{sec}{frac}{tz}{tail}"
        ),
        _digits(0, 10000, 4),
        _digits(0, 13, 2),
        _digits(0, 32, 2),
        st.sampled_from(["T", "t", " ", "_", "TT"]),
        _digits(0, 25, 2),
        _digits(0, 61, 2),
        st.sampled_from([""]) | _digits(0, 61, 2).map(lambda s: f":{s}"),
        st.sampled_from(["", "."]) | st.integers(0, 10**12).map(lambda n: f".{n}"),
        st.sampled_from(["", "Z", "z", "+05:30", "-0800", "+05", "+24:00", "-23:59", "+1", "Z+1"]),
        st.sampled_from(["", "", "", "\n", " ", "x"]),
    ),
    st.builds(
        lambda y, mo, d, tail: f"{y}-{mo}-{d}{tail}",
        _digits(0, 10000, 4),
        _digits(0, 13, 2),
        _digits(0, 32, 2),
        st.sampled_from(["", "", "\n", "T", "Z"]),
    ),
    st.sampled_from(["0001-01-01T00:00+00:01", "9999-12-31T23:59:59.999999-00:01", "٢٠٢٤-01-01"]),
    text_values,
)


async def _parse_in_sql(engine: AsyncEngine, texts: list[str]) -> list[datetime | None]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT segmenter.parse_instant(t) FROM unnest(CAST(:texts AS text[]))"
                " WITH ORDINALITY AS u(t, i) ORDER BY i"
            ),
            {"texts": texts},
        )
        return [row[0] for row in result]


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(texts=st.lists(instant_texts, min_size=1, max_size=30))
def test_parse_instant_agrees(database: Database, texts: list[str]) -> None:
    assert database.run(_parse_in_sql(database.engine, texts)) == [parse_instant(t) for t in texts]


def test_flips_near_the_end_of_time_agree(database: Database) -> None:
    """Flips past 9999-12-31 are None on both sides; the last representable one is kept."""
    rule = parse_rule({"kind": "trait", "trait": "t", "op": "older_than", "days": 1})
    texts = ["9999-12-30T23:59:59.999998", "9999-12-30T23:59:59.999999", "9999-12-31", "2024-01-01"]
    population = [
        ProfileSnapshot(f"c{i}", BASE, BASE, traits={"t": t}) for i, t in enumerate(texts)
    ]
    now = BASE.astimezone(timezone(timedelta(hours=-5)))  # any timezone: same instant
    correlated, shared = database.run(_evaluate_in_sql(database.engine, [rule], now, population))
    for [(matched, _, flips)] in (correlated, shared):
        assert flips == {p.customer_id: next_flip(rule, p, now) for p in population}
        assert flips == {
            "c0": datetime.max.replace(tzinfo=UTC),
            "c1": None,
            "c2": None,
            "c3": None,
        }
        assert matched == {"c3"}


def _matching(rule: Node, now: datetime) -> Select[tuple[str]]:
    """The ids of the customers ``rule`` holds for at ``now``."""
    return select(profiles.c.customer_id).where(compile_sql(rule, now=now))
