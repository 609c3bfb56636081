"""The topic registry: one encoder per topic, writing exactly the bytes of the topic
model's serializer (from a model or from its values), one decoder, and the docs'
topic table rendered from it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.events import ALL_TOPICS
from shared.events.journey_runs import ExitReason, JourneyRunEvent, RunEventKind
from shared.events.profiles import ComputedFields, ProfileUpdate, Recommendation
from shared.events.registry import (
    DOC,
    JOURNEY_RUNS,
    PROFILES,
    SEGMENT_CHANGES,
    TOPICS,
    documented_table,
    encode_model,
    render_table,
    topic,
)
from shared.events.segment_changes import Change, SegmentChange

EXAMPLES = Path(__file__).parent.parent.parent / "examples"
ids = st.text(min_size=1, max_size=12)
instants = st.datetimes(timezones=st.just(UTC))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
maybe_text = st.none() | st.text(max_size=8)
#: a customer.events position as the segmenter passes it: a mapping by JSON name, in
#: the model's order
positions = st.none() | st.builds(
    lambda partition, offset: {"partition": partition, "offset": offset},
    st.integers(0, 2**31),
    st.integers(0, 2**63 - 1),
)
maybe_float = st.none() | st.floats(allow_nan=False, allow_infinity=False)
_NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


@given(
    change_id=ids,
    customer_id=ids,
    segment_id=ids,
    segment_version=st.integers(min_value=1, max_value=2**31),
    change=st.sampled_from(Change),
    at=instants,
    cause=st.sampled_from(["event", "time", "segment_edit", "score", "customer_deleted"]),
    position=positions,
)
def test_a_change_from_values_or_model_is_the_models_bytes(**fields: Any) -> None:
    model = SegmentChange(**fields)
    assert SEGMENT_CHANGES.encode_values(**fields) == model.to_bytes()
    assert SEGMENT_CHANGES.decode(model.to_bytes()) == model
    assert encode_model(model) == model.to_bytes()


@given(
    customer_id=ids,
    version=st.integers(min_value=1, max_value=2**31),
    traits=st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    email=maybe_text,
    phone=maybe_text,
    timezone=maybe_text,
    locale=maybe_text,
    first_seen_at=instants,
    last_seen_at=instants,
    updated_at=instants,
    computed=st.fixed_dictionaries(
        {
            "churn_risk": maybe_float,
            "predicted_ltv": maybe_float,
            "rfm_tier": maybe_text,
            "score_method": maybe_text,
            "loyalty_tier": maybe_text,
            "loyalty_points": st.none() | st.integers(min_value=0, max_value=2**40),
        }
    ),
    recommendations=st.none()
    | st.lists(
        st.builds(
            lambda product, score, because, source: {
                "productId": product,
                "score": score,
                "because": because,
                "source": source,
            },
            ids,
            st.floats(allow_nan=False, allow_infinity=False),
            st.lists(ids, max_size=3),
            st.sampled_from(["similar", "popular"]),
        ),
        max_size=4,
    ),
    folded=positions,
)
def test_a_profile_from_values_or_model_is_the_models_bytes(
    computed: dict[str, Any], recommendations: list[dict[str, Any]] | None, **fields: Any
) -> None:
    model = ProfileUpdate(
        **fields,
        computed=ComputedFields(**computed),
        recommendations=(
            None
            if recommendations is None
            else [Recommendation.model_validate(r) for r in recommendations]
        ),
    )
    aliased = {  # by JSON name, in the model's order, as the segmenter passes them
        field.alias: computed[name]
        for name, field in ComputedFields.model_fields.items()
        if computed[name] is not None
    }
    encoded = PROFILES.encode_values(**fields, computed=aliased, recommendations=recommendations)
    assert encoded == model.to_bytes()
    assert encode_model(model) == model.to_bytes()


def test_what_only_pydantic_writes_is_written_by_pydantic() -> None:
    values: dict[str, Any] = {
        "customer_id": "c-1",
        "version": 1,
        "traits": {"id": 2**70},
        "first_seen_at": _NOW,
        "last_seen_at": _NOW,
        "updated_at": _NOW,
    }
    model = ProfileUpdate(**values)
    assert PROFILES.encode_values(**values) == model.to_bytes()
    assert encode_model(model) == model.to_bytes()
    assert b"1180591620717411303424" in model.to_bytes()


@given(
    event_id=ids,
    kind=st.sampled_from(RunEventKind),
    run_id=ids,
    seq=st.integers(min_value=0, max_value=2**31),
    customer_id=ids,
    journey_id=ids,
    journey_version=st.integers(min_value=1, max_value=2**31),
    at=instants,
    entered_at=instants,
    holdout=st.booleans(),
    step_id=maybe_text,
    variant=maybe_text,
    waiting_until=st.none() | instants,
    exit_reason=st.none() | st.sampled_from(ExitReason),
    detail=maybe_text,
)
def test_a_run_event_is_the_models_bytes(**fields: Any) -> None:
    model = JourneyRunEvent(**fields)
    assert JOURNEY_RUNS.encode(model) == model.to_bytes()
    assert JOURNEY_RUNS.key(model) == model.customer_id.encode()


@pytest.mark.parametrize(
    "path", sorted(EXAMPLES.glob("*/v*/*.json")), ids=lambda p: f"{p.parent.parent.name}/{p.name}"
)
def test_every_example_decodes_and_encodes_to_the_models_bytes(path: Path) -> None:
    registered = topic(path.parent.parent.name)
    payload = registered.decode(path.read_bytes())
    assert registered.encode(payload) == payload.to_bytes()
    assert encode_model(payload) == payload.to_bytes()  # whichever a topic uses
    message = registered.message(payload)
    assert (message.topic, message.key) == (registered.name, payload.key)


def test_every_topic_is_registered_once_with_its_modules_names() -> None:
    assert tuple(t.name for t in TOPICS) == ALL_TOPICS
    assert len(set(ALL_TOPICS)) == len(ALL_TOPICS)
    for registered in TOPICS:
        module = __import__(registered.module, fromlist=["TOPIC"])
        assert (registered.name, registered.dlq) == (module.TOPIC, module.DLQ_TOPIC)


def test_the_docs_topic_table_is_the_registrys() -> None:
    """Regenerate with ``python -m shared.events.registry --write-docs``."""
    assert documented_table(DOC.read_text()) == render_table()
