"""The rule models: what they accept, where their errors point, and the analysis helpers."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.segmenter.rules import (
    MAX_DEPTH,
    SegmentDefinition,
    TraitEquals,
    dimension_key,
    dump_rule,
    is_time_dependent,
    max_window_days,
    parse_rule,
    parse_rule_json,
    referenced_dimensions,
    referenced_segments,
    referenced_statistics,
)
from services.segmenter.rules.ast import RfmTierRule, rule_depth

EXAMPLES: list[dict[str, Any]] = [
    {"kind": "trait", "trait": "plan", "op": "eq", "value": "pro"},
    {"kind": "trait", "trait": "plan", "op": "neq", "value": {"tier": [1, 2.5, None]}},
    {"kind": "trait", "trait": "age", "op": "gte", "value": 18},
    {"kind": "trait", "trait": "name", "op": "lt", "value": "M"},
    {"kind": "trait", "trait": "country", "op": "in", "value": ["DE", "AT", 1, True]},
    {"kind": "trait", "trait": "tags", "op": "contains", "value": "beta"},
    {"kind": "trait", "trait": "email", "op": "exists", "value": True},
    {"kind": "trait", "trait": "signed_up_at", "op": "older_than", "days": 14},
    {"kind": "trait", "trait": "trial_ends_at", "op": "newer_than", "days": 0.5},
    {"kind": "event_count", "event": "Order Completed", "op": "gte", "count": 3},
    {
        "kind": "event_count",
        "event": "Order Completed",
        "op": "gte",
        "count": 3,
        "within_days": 90,
        "where": {"property": "category", "equals": "shoes"},
    },
    {
        "kind": "event_value",
        "event": "Order Completed",
        "aggregate": "sum",
        "op": "gte",
        "value": 100,
        "within_days": 30,
    },
    {
        "kind": "event_value",
        "event": "Order Completed",
        "aggregate": "avg",
        "op": "lt",
        "value": 9.5,
    },
    {"kind": "last_event", "older_than_days": 30},
    {"kind": "last_event", "event": "Order Completed", "newer_than_days": 7},
    {"kind": "first_seen", "newer_than_days": 14},
    {"kind": "segment", "segment_id": "vip"},
    {"kind": "score", "score": "churn_risk", "op": "gt", "value": 0.7},
    {"kind": "rfm_tier", "in": ["champions", "loyal"]},
    {
        "kind": "all",
        "rules": [
            {"kind": "segment", "segment_id": "vip"},
            {
                "kind": "not",
                "rule": {"kind": "any", "rules": [{"kind": "first_seen", "older_than_days": 1}]},
            },
        ],
    },
]


@pytest.mark.parametrize("document", EXAMPLES, ids=lambda d: str(d["kind"]))
def test_documents_round_trip(document: dict[str, Any]) -> None:
    rule = parse_rule(document)
    assert dump_rule(rule) == document
    assert parse_rule_json(orjson.dumps(dump_rule(rule))) == rule


def test_python_construction_uses_defaults_and_names() -> None:
    assert TraitEquals(trait="plan", op="eq", value="pro") == parse_rule(EXAMPLES[0])
    assert RfmTierRule(tiers=("lost",)) == parse_rule({"kind": "rfm_tier", "in": ["lost"]})


def test_rules_are_frozen() -> None:
    rule = TraitEquals(trait="plan", op="eq", value="pro")
    with pytest.raises(ValidationError):
        rule.trait = "other"  # type: ignore[misc]


def test_the_json_schema_can_be_generated() -> None:
    schema = SegmentDefinition.json_schema()
    assert "TraitEquals" in schema["$defs"]


def _errors(document: Any) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        parse_rule(document)
    return [(tuple(e["loc"]), e["type"]) for e in caught.value.errors()]


def _only_location(document: Any) -> tuple[str | int, ...]:
    errors = _errors(document)
    assert len(errors) == 1, errors
    return errors[0][0]


def trait(op: str, **fields: Any) -> dict[str, Any]:
    return {"kind": "trait", "trait": "plan", "op": op, **fields}


def count(**fields: Any) -> dict[str, Any]:
    return {"kind": "event_count", "event": "Order Completed", "op": "gte", "count": 1, **fields}


@pytest.mark.parametrize(
    ("document", "location"),
    [
        ({"kind": "nope"}, ()),
        ({"rules": []}, ()),
        ({"kind": "all", "rules": []}, ("all", "rules")),
        ({"kind": "any"}, ("any", "rules")),
        ({"kind": "not", "rule": {"kind": "segment"}}, ("not", "rule", "segment", "segment_id")),
        (
            {"kind": "all", "rules": [EXAMPLES[0], trait("in", value=[])]},
            ("all", "rules", 1, "trait", "in", "value"),
        ),
        (trait("bogus", value=1), ("trait",)),
        (trait("eq", value=None), ("trait", "eq", "value")),
        (trait("eq"), ("trait", "eq", "value")),
        (trait("eq", value=1, days=3), ("trait", "eq", "days")),
        (trait("eq", value=float("nan")), ("trait", "eq", "value")),
        (trait("eq", value=["a\x00"]), ("trait", "eq", "value")),
        (trait("gt", value=True), ("trait", "gt", "value")),
        (trait("gt", value=[1]), ("trait", "gt", "value")),
        (trait("in", value="pro"), ("trait", "in", "value")),
        (trait("in", value=[None]), ("trait", "in", "value", 0)),
        (trait("contains", value={"a": 1}), ("trait", "contains", "value")),
        (trait("exists", value="yes"), ("trait", "exists", "value")),
        (trait("older_than", days=0), ("trait", "older_than", "days")),
        (trait("older_than", days=-1), ("trait", "older_than", "days")),
        (trait("older_than", days="14"), ("trait", "older_than", "days")),
        (trait("newer_than", days=14, value="x"), ("trait", "newer_than", "value")),
        (
            {"kind": "trait", "trait": "", "op": "exists", "value": True},
            ("trait", "exists", "trait"),
        ),
        (count(within_days=0), ("event_count", "within_days")),
        (count(within_days=1.5), ("event_count", "within_days")),
        (count(within_days="7"), ("event_count", "within_days")),
        (count(within_days=3651), ("event_count", "within_days")),
        (count(count=-1), ("event_count", "count")),
        (count(where={"property": "category", "equals": "shoes"}), ("event_count", "where")),
        (
            count(within_days=7, where={"property": "a=b", "equals": 1}),
            ("event_count", "where", "property"),
        ),
        (
            count(within_days=7, where={"property": "a", "equals": None}),
            ("event_count", "where", "equals"),
        ),
        (count(op="contains"), ("event_count", "op")),
        (count(typo=1), ("event_count", "typo")),
        (
            {"kind": "event_value", "event": "x", "aggregate": "max", "op": "gt", "value": 1},
            ("event_value", "aggregate"),
        ),
        ({"kind": "last_event"}, ("last_event",)),
        ({"kind": "last_event", "older_than_days": 1, "newer_than_days": 2}, ("last_event",)),
        ({"kind": "first_seen", "older_than_days": 0}, ("first_seen", "older_than_days")),
        ({"kind": "segment", "segment_id": 7}, ("segment", "segment_id")),
        (
            {"kind": "score", "score": "ltv", "op": "gt", "value": 1},
            ("score", "score"),
        ),
        (
            {"kind": "score", "score": "churn_risk", "op": "neq", "value": 1},
            ("score", "op"),
        ),
        (
            {"kind": "score", "score": "churn_risk", "op": "gt", "value": False},
            ("score", "value"),
        ),
        ({"kind": "rfm_tier", "in": []}, ("rfm_tier", "in")),
    ],
)
def test_errors_name_the_wrong_part(document: Any, location: tuple[str | int, ...]) -> None:
    assert _only_location(document) == location


def _nested(depth: int) -> dict[str, Any]:
    document: dict[str, Any] = {"kind": "segment", "segment_id": "vip"}
    for _ in range(depth - 1):
        document = {"kind": "not", "rule": document}
    return document


def test_nesting_is_limited() -> None:
    assert rule_depth(parse_rule(_nested(MAX_DEPTH))) == MAX_DEPTH
    errors = _errors({"kind": "all", "rules": [_nested(MAX_DEPTH)]})
    assert errors == [(("all",), "value_error")]


def test_dimension_keys_are_canonical_json() -> None:
    assert dimension_key("category", "shoes") == 'category="shoes"'
    assert dimension_key("n", 1) == "n=1"
    assert dimension_key("n", 1.5) == "n=1.5"
    assert dimension_key("b", True) == "b=true"
    assert dimension_key("s", "é") == 's="é"'


def test_equal_json_numbers_share_a_dimension() -> None:
    assert dimension_key("n", 1.0) == dimension_key("n", 1) == "n=1"
    assert dimension_key("o", {"b": [2.0, 3.5], "a": 1}) == 'o={"a":1,"b":[2,3.5]}'
    assert dimension_key("b", True) != dimension_key("b", 1)  # true is not 1 in JSON
    assert dimension_key("big", 2.0**60) == f"big={orjson.dumps(2.0**60).decode()}"  # stays a float


@given(st.integers(-(2**53) + 1, 2**53 - 1))
def test_an_integral_float_is_its_integer(n: int) -> None:
    assert dimension_key("n", float(n)) == dimension_key("n", n)


def test_analysis_helpers() -> None:
    rule = parse_rule(
        {
            "kind": "any",
            "rules": [
                {"kind": "segment", "segment_id": "vip"},
                {"kind": "not", "rule": {"kind": "segment", "segment_id": "churned"}},
                EXAMPLES[9],  # all-time count: reads event_stats, no rollups
                EXAMPLES[10],  # 90 days, category = shoes
                EXAMPLES[11],  # 30 days, unfiltered
            ],
        }
    )
    assert referenced_segments(rule) == {"vip", "churned"}
    assert referenced_dimensions(rule) == {
        ("Order Completed", 'category="shoes"'),
        ("Order Completed", ""),
    }
    assert max_window_days(rule) == 90
    assert max_window_days(parse_rule(EXAMPLES[0])) is None


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (EXAMPLES[0], False),
        (EXAMPLES[7], True),  # trait older_than
        (EXAMPLES[9], False),  # all-time count
        (EXAMPLES[10], True),  # windowed count
        (EXAMPLES[12], False),  # all-time avg
        (EXAMPLES[13], True),  # last_event
        (EXAMPLES[15], True),  # first_seen
        (EXAMPLES[16], False),  # segment
        (EXAMPLES[17], False),  # score
        ({"kind": "not", "rule": {"kind": "all", "rules": [EXAMPLES[0], EXAMPLES[13]]}}, True),
    ],
)
def test_is_time_dependent(document: dict[str, Any], expected: bool) -> None:
    assert is_time_dependent(parse_rule(document)) is expected


def test_referenced_statistics_are_the_all_time_and_last_event_leaves() -> None:
    rule = parse_rule(
        {
            "kind": "any",
            "rules": [
                {"kind": "event_count", "event": "Signed In", "op": "gte", "count": 2},
                {
                    "kind": "event_value",
                    "event": "Order Completed",
                    "aggregate": "avg",
                    "op": "gt",
                    "value": 5,
                },
                {"kind": "last_event", "event": "Refund Issued", "older_than_days": 3},
                {"kind": "last_event", "older_than_days": 30},  # last seen: the profile
                {
                    "kind": "event_count",
                    "event": "Product Viewed",  # windowed: rollups
                    "op": "gte",
                    "count": 1,
                    "within_days": 7,
                },
            ],
        }
    )
    assert referenced_statistics(rule) == {"Signed In", "Order Completed", "Refund Issued"}


def _grid(groups: int, leaves: int) -> dict[str, Any]:
    leaf = {"kind": "event_count", "op": "gte", "count": 1, "within_days": 7}
    return {
        "kind": "any",
        "rules": [
            {"kind": "all", "rules": [{**leaf, "event": f"e{i}-{j}"} for j in range(leaves)]}
            for i in range(groups)
        ],
    }


def test_the_total_size_of_a_rule_is_capped() -> None:
    from services.segmenter.rules.ast import MAX_RULE_SIZE, rule_size

    # 100 x 100 leaves passes the depth and fan-out limits, not the size cap
    assert _errors(_grid(100, 100)) == [(("any",), "value_error")]
    fits = parse_rule(_grid(19, 100))
    assert rule_size(fits) == 1 + 19 * 101 <= MAX_RULE_SIZE
    # listed values count: an `in` of 1,000 values is 1,001
    many = {"kind": "trait", "trait": "t", "op": "in", "value": list(range(1000))}
    assert rule_size(parse_rule(many)) == 1001
    assert _errors({"kind": "any", "rules": [many, many]}) == [(("any",), "value_error")]


def test_every_json_schema_discriminator_maps_to_references() -> None:
    """OpenAPI allows only references in a discriminator's mapping (``/openapi.json``)."""

    def discriminators(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, dict):
            found = [node["discriminator"]] if "discriminator" in node else []
            return found + [d for value in node.values() for d in discriminators(value)]
        if isinstance(node, list):
            return [d for value in node for d in discriminators(value)]
        return []

    found = discriminators(SegmentDefinition.json_schema())
    assert found, "the trait leaves keep their discriminator"
    for discriminator in found:
        assert all(isinstance(ref, str) for ref in discriminator.get("mapping", {}).values())
