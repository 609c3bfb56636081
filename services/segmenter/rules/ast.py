"""The segment rule language: frozen pydantic models, one per node kind.

A rule is a tree discriminated on ``kind`` (and, for ``trait`` leaves, on ``op``).
Models forbid unknown fields, so a typo is an error rather than a silently
ignored condition. See ``docs/segments.md`` for the semantics of every node.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Self, Union

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    JsonValue,
    PlainValidator,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

MAX_DEPTH = 10
"""Deepest allowed nesting; a lone leaf has depth 1, ``all[leaf]`` depth 2."""
MAX_CHILDREN = 100
"""Most children of one ``all`` / ``any``."""
MAX_RULE_SIZE = 2000
"""Most nodes plus listed values (``in`` values, tiers) in one rule: each becomes a few
bind parameters of the SQL that evaluates it (asyncpg allows 32,767 a statement) and
costs compile time (about 0.6 ms a leaf)."""
MAX_WINDOW_DAYS = 3650
"""Longest ``within_days``; rollups must be kept at least this long for the longest window."""
MAX_DURATION_DAYS = 36500
"""Longest ``older_than`` / ``newer_than`` duration (100 years)."""


# --- field types -------------------------------------------------------------------------


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain NUL characters (PostgreSQL cannot store them)")
    return text


def _no_equals(text: str) -> str:
    if "=" in text:
        raise ValueError("must not contain '=' (it separates property and value in a dimension)")
    return text


def _check_json(value: JsonValue, path: str = "value") -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path}: numbers must be finite")
    if isinstance(value, str):
        _no_nul(value)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key)
            _check_json(item, f"{path}.{key}")


def _json_not_null(value: JsonValue) -> JsonValue:
    if value is None:
        raise ValueError("null is not a comparable value; use the `exists` op")
    _check_json(value)
    return value


def _as_number(value: object) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _as_scalar(value: object) -> str | bool | int | float:
    if isinstance(value, str):
        return _no_nul(value)
    if isinstance(value, bool):
        return value
    try:
        return _as_number(value)
    except ValueError:
        raise ValueError("must be a string, a number or a boolean") from None


def _as_comparable(value: object) -> str | int | float:
    if isinstance(value, str):
        return _no_nul(value)
    try:
        return _as_number(value)
    except ValueError:
        raise ValueError("must be a string or a number (booleans are not ordered)") from None


def _as_days(value: object) -> int | float:
    days = _as_number(value)
    if not 0 < days <= MAX_DURATION_DAYS:
        raise ValueError(f"must be more than 0 and at most {MAX_DURATION_DAYS} days")
    return days


def _non_empty(items: tuple[Any, ...]) -> tuple[Any, ...]:
    if not items:
        raise ValueError("must not be empty")
    return items


Name = Annotated[
    str, Strict(), StringConstraints(min_length=1, max_length=255), AfterValidator(_no_nul)
]
"""A non-empty identifier (trait, event, segment id, tier)."""
PropertyName = Annotated[Name, AfterValidator(_no_equals)]
Number = Annotated[int | float, PlainValidator(_as_number, json_schema_input_type=float)]
"""A finite JSON number (booleans are not numbers)."""
Scalar = Annotated[
    str | bool | int | float,
    PlainValidator(_as_scalar, json_schema_input_type=str | bool | float),
]
"""A JSON string, number or boolean."""
Comparable = Annotated[
    str | int | float, PlainValidator(_as_comparable, json_schema_input_type=str | float)
]
"""What an ordering op compares against: a string or a number."""
JsonNotNull = Annotated[JsonValue, AfterValidator(_json_not_null)]
"""Any JSON value except null, with finite numbers and NUL-free strings."""
Days = Annotated[int | float, PlainValidator(_as_days, json_schema_input_type=float)]
"""A positive duration in days; fractions allowed (0.5 = 12 hours)."""
WindowDays = Annotated[int, Strict(), Field(ge=1, le=MAX_WINDOW_DAYS)]
"""A positive whole number of UTC days."""
Count = Annotated[int, Strict(), Field(ge=0, le=2**62)]

CompareOp = Literal["eq", "neq", "gt", "gte", "lt", "lte"]
ScoreName = Literal["churn_risk", "predicted_ltv", "rfm_recency", "rfm_frequency", "rfm_monetary"]


class _Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- composites --------------------------------------------------------------------------


class _Composite(_Node):
    """A rule made of rules: nesting is limited to :data:`MAX_DEPTH` levels."""

    @model_validator(mode="after")
    def _depth(self) -> Self:
        depth = rule_depth(self)  # type: ignore[arg-type]
        if depth > MAX_DEPTH:
            raise ValueError(f"rules nest {depth} levels deep; at most {MAX_DEPTH} are allowed")
        size = rule_size(self)  # type: ignore[arg-type]
        if size > MAX_RULE_SIZE:
            raise ValueError(
                f"the rule has {size} nodes and listed values; at most {MAX_RULE_SIZE} "
                "are allowed (split it into segments that refer to each other)"
            )
        return self


class _Group(_Composite):
    rules: Annotated[tuple[Rule, ...], Field(max_length=MAX_CHILDREN), AfterValidator(_non_empty)]


class AllRule(_Group):
    """True when every child is true."""

    kind: Literal["all"] = "all"


class AnyRule(_Group):
    """True when at least one child is true."""

    kind: Literal["any"] = "any"


class NotRule(_Composite):
    """True when the child is false."""

    kind: Literal["not"] = "not"
    rule: Rule


# --- trait leaves (discriminated on ``op``) -----------------------------------------------


class TraitEquals(_Node):
    """JSON equality (``eq``) or its negation (``neq``, also true when the trait is missing)."""

    kind: Literal["trait"] = "trait"
    trait: Name
    op: Literal["eq", "neq"]
    value: JsonNotNull


class TraitCompare(_Node):
    """Ordering against a number (numbers only) or a string (strings only, codepoint order)."""

    kind: Literal["trait"] = "trait"
    trait: Name
    op: Literal["gt", "gte", "lt", "lte"]
    value: Comparable


class TraitIn(_Node):
    """JSON equality with any of the listed values."""

    kind: Literal["trait"] = "trait"
    trait: Name
    op: Literal["in"]
    value: Annotated[tuple[JsonNotNull, ...], Field(max_length=1000), AfterValidator(_non_empty)]


class TraitContains(_Node):
    """A string trait contains the string ``value``, or a list trait has an element equal to it."""

    kind: Literal["trait"] = "trait"
    trait: Name
    op: Literal["contains"]
    value: Scalar


class TraitExists(_Node):
    """The trait is present and not null (``value: true``), or missing/null (``false``)."""

    kind: Literal["trait"] = "trait"
    trait: Name
    op: Literal["exists"]
    value: Annotated[bool, Strict()]


class TraitAge(_Node):
    """The trait is an ISO-8601 date/datetime string older / newer than ``days`` before now."""

    kind: Literal["trait"] = "trait"
    trait: Name
    op: Literal["older_than", "newer_than"]
    days: Days


TraitRule = Annotated[
    Union[TraitEquals, TraitCompare, TraitIn, TraitContains, TraitExists, TraitAge],  # noqa: UP007
    Field(discriminator="op"),
]


# --- event leaves ------------------------------------------------------------------------


class PropertyFilter(_Node):
    """Only events whose top-level ``property`` equals ``equals`` (canonical JSON encoding)."""

    property: PropertyName
    equals: Scalar


def dimension_key(prop: str, value: Any) -> str:
    """The ``event_rollups.dimension`` of events whose ``prop`` equals ``value``.

    Equal JSON values give equal keys: ``1`` and ``1.0`` are one number in JSON (and
    in ``jsonb``), so integral floats are written as integers, at any depth.
    """
    return f"{prop}={orjson.dumps(_canonical(value), option=orjson.OPT_SORT_KEYS).decode()}"


def _canonical(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def _where_needs_window(where: PropertyFilter | None, info: ValidationInfo) -> None:
    if where is not None and "within_days" in info.data and info.data["within_days"] is None:
        raise ValueError(
            "`where` needs `within_days`: filtered counts come from daily rollups, "
            "which are only kept for windows"
        )


class EventCountRule(_Node):
    """How many times ``event`` happened (in the last ``within_days`` UTC days, or ever)."""

    kind: Literal["event_count"] = "event_count"
    event: Name
    op: CompareOp
    count: Count
    within_days: WindowDays | None = None
    where: PropertyFilter | None = None

    @field_validator("where")
    @classmethod
    def _where(cls, where: PropertyFilter | None, info: ValidationInfo) -> PropertyFilter | None:
        _where_needs_window(where, info)
        return where

    @property
    def dimension(self) -> str:
        """The rollup dimension this leaf reads: ``''`` for all events of the name."""
        return "" if self.where is None else dimension_key(self.where.property, self.where.equals)


class EventValueRule(_Node):
    """Sum or average of the events' value (``revenue``, else ``value``) against a number."""

    kind: Literal["event_value"] = "event_value"
    event: Name
    aggregate: Literal["sum", "avg"]
    op: CompareOp
    value: Number
    within_days: WindowDays | None = None
    where: PropertyFilter | None = None

    @field_validator("where")
    @classmethod
    def _where(cls, where: PropertyFilter | None, info: ValidationInfo) -> PropertyFilter | None:
        _where_needs_window(where, info)
        return where

    @property
    def dimension(self) -> str:
        """The rollup dimension this leaf reads: ``''`` for all events of the name."""
        return "" if self.where is None else dimension_key(self.where.property, self.where.equals)


def _exactly_one(older: float | None, newer: float | None) -> None:
    if (older is None) == (newer is None):
        raise ValueError("give exactly one of `older_than_days` and `newer_than_days`")


class _DurationRule(_Node):
    """A condition on how long ago something was: exactly one of the two durations."""

    older_than_days: Days | None = None
    newer_than_days: Days | None = None

    @model_validator(mode="after")
    def _one_duration(self) -> Self:
        _exactly_one(self.older_than_days, self.newer_than_days)
        return self

    @property
    def older(self) -> bool:
        """Whether this is an ``older_than_days`` condition."""
        return self.older_than_days is not None

    @property
    def days(self) -> int | float:
        """The duration, whichever of the two fields holds it."""
        return _days(self.older_than_days, self.newer_than_days)


class LastEventRule(_DurationRule):
    """The last ``event`` (any event when null: ``profiles.last_seen_at``) is older/newer."""

    kind: Literal["last_event"] = "last_event"
    event: Name | None = None


class FirstSeenRule(_DurationRule):
    """The profile's ``first_seen_at`` is older/newer."""

    kind: Literal["first_seen"] = "first_seen"


def _days(older: int | float | None, newer: int | float | None) -> int | float:
    days = older if older is not None else newer
    assert days is not None, "validated: exactly one is set"
    return days


# --- other leaves ------------------------------------------------------------------------


class SegmentRule(_Node):
    """The customer is a member of ``segment_id`` now."""

    kind: Literal["segment"] = "segment"
    segment_id: Name


class ScoreRule(_Node):
    """A profile score compared with a number; false while the score is null."""

    kind: Literal["score"] = "score"
    score: ScoreName
    op: Literal["gt", "gte", "lt", "lte", "eq"]
    value: Number


class RfmTierRule(_Node):
    """The profile's RFM tier is one of ``in``; false while the tier is null."""

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    kind: Literal["rfm_tier"] = "rfm_tier"
    tiers: Annotated[tuple[Name, ...], Field(max_length=100), AfterValidator(_non_empty)] = Field(
        alias="in"
    )


class LoyaltyTierRule(_Node):
    """The customer's loyalty tier is one of ``in``; false outside the program. A tier
    change is a segment change, so a journey can welcome a customer to Gold."""

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    kind: Literal["loyalty_tier"] = "loyalty_tier"
    tiers: Annotated[tuple[Name, ...], Field(max_length=20), AfterValidator(_non_empty)] = Field(
        alias="in"
    )


class _PlainMapping:
    """Drops the JSON schema's ``kind`` discriminator when its mapping is not all references.

    Pydantic writes the nested union of ``trait`` leaves (discriminated on ``op``)
    as an object inside the ``kind`` mapping, which OpenAPI forbids (mapping
    values are schema references), so ``/openapi.json`` failed to build. The
    ``oneOf`` left says the same (each branch fixes its ``kind``, each trait leaf
    its ``op``); validation is unchanged.
    """

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(core_schema)
        target = handler.resolve_ref_schema(json_schema)
        mapping = target.get("discriminator", {}).get("mapping", {})
        if not all(isinstance(ref, str) for ref in mapping.values()):
            del target["discriminator"]
        return json_schema


Rule = Annotated[
    Union[  # noqa: UP007
        AllRule,
        AnyRule,
        NotRule,
        TraitRule,
        EventCountRule,
        EventValueRule,
        LastEventRule,
        FirstSeenRule,
        SegmentRule,
        ScoreRule,
        RfmTierRule,
        LoyaltyTierRule,
    ],
    Field(discriminator="kind"),
    _PlainMapping,
]
"""Any rule node."""

Trait = TraitEquals | TraitCompare | TraitIn | TraitContains | TraitExists | TraitAge
Node = (
    AllRule
    | AnyRule
    | NotRule
    | Trait
    | EventCountRule
    | EventValueRule
    | LastEventRule
    | FirstSeenRule
    | SegmentRule
    | ScoreRule
    | RfmTierRule
    | LoyaltyTierRule
)
"""The same union as :data:`Rule`, for ``isinstance`` and annotations."""

for _model in (AllRule, AnyRule, NotRule):
    _model.model_rebuild()

SegmentDefinition: TypeAdapter[Node] = TypeAdapter(Rule)
"""Validates and dumps a whole rule tree (the ``definition`` column of ``segments``)."""


def parse_rule(data: Any) -> Node:
    """Validate a decoded JSON document; raises ``pydantic.ValidationError`` naming the part."""
    return SegmentDefinition.validate_python(data)


def parse_rule_json(text: str | bytes) -> Node:
    """Validate a JSON text; raises ``pydantic.ValidationError`` naming the part."""
    return SegmentDefinition.validate_json(text)


def dump_rule(rule: Node) -> dict[str, Any]:
    """The JSON-ready document of ``rule``; ``parse_rule(dump_rule(r)) == r``."""
    dumped: dict[str, Any] = SegmentDefinition.dump_python(
        rule, mode="json", by_alias=True, exclude_none=True
    )
    return dumped


# --- analysis ----------------------------------------------------------------------------


def children(rule: Node) -> tuple[Node, ...]:
    """The direct children of a composite; ``()`` for a leaf."""
    if isinstance(rule, AllRule | AnyRule):
        return rule.rules
    if isinstance(rule, NotRule):
        return (rule.rule,)
    return ()


def walk(rule: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children."""
    stack = [rule]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(children(node)))


def rule_depth(rule: Node) -> int:
    """Nesting depth: 1 for a leaf."""
    kids = children(rule)
    return 1 + max(map(rule_depth, kids)) if kids else 1


def rule_size(rule: Node) -> int:
    """Nodes plus the values listed in ``in`` leaves and ``rfm_tier`` tiers."""
    size = 0
    for node in walk(rule):
        size += 1
        if isinstance(node, TraitIn):
            size += len(node.value)
        elif isinstance(node, RfmTierRule | LoyaltyTierRule):
            size += len(node.tiers)
    return size


def referenced_segments(rule: Node) -> frozenset[str]:
    """Ids of the segments whose membership the rule reads."""
    return frozenset(n.segment_id for n in walk(rule) if isinstance(n, SegmentRule))


def referenced_dimensions(rule: Node) -> frozenset[tuple[str, str]]:
    """``(event_name, dimension)`` rollup rows the windowed leaves read (``''`` = unfiltered)."""
    return frozenset(
        (n.event, n.dimension)
        for n in walk(rule)
        if isinstance(n, EventCountRule | EventValueRule) and n.within_days is not None
    )


def referenced_statistics(rule: Node) -> frozenset[str]:
    """Event names whose all-time ``event_stats`` row the rule reads (counts and values
    without a window, and the last time an event was performed)."""
    names: set[str] = set()
    for n in walk(rule):
        if isinstance(n, EventCountRule | EventValueRule):
            if n.within_days is None:
                names.add(n.event)
        elif isinstance(n, LastEventRule) and n.event is not None:
            names.add(n.event)
    return frozenset(names)


def max_window_days(rule: Node) -> int | None:
    """The longest ``within_days`` in the rule (how many days of rollups it needs), if any."""
    windows = [
        n.within_days
        for n in walk(rule)
        if isinstance(n, EventCountRule | EventValueRule) and n.within_days is not None
    ]
    return max(windows, default=None)


def is_time_dependent_leaf(node: Node) -> bool:
    """Whether this single node's value can change with the clock alone."""
    if isinstance(node, TraitAge | LastEventRule | FirstSeenRule):
        return True
    return isinstance(node, EventCountRule | EventValueRule) and node.within_days is not None


def is_time_dependent(rule: Node) -> bool:
    """Whether the rule's value can change with no new event, only because time passes."""
    return any(is_time_dependent_leaf(n) for n in walk(rule))
