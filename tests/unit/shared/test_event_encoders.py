"""The fast encoders write exactly the bytes of their topic models' serializer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.events.profiles import (
    ComputedFields,
    ProfileUpdate,
    Recommendation,
    encode_profile_update,
)
from shared.events.segment_changes import Change, SegmentChange, encode_change

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
)
def test_encode_change_writes_the_models_bytes(**fields: Any) -> None:
    assert encode_change(**fields) == SegmentChange(**fields).to_bytes()


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
)
def test_encode_profile_update_writes_the_models_bytes(
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
    encoded = encode_profile_update(**fields, computed=computed, recommendations=recommendations)
    assert encoded == model.to_bytes()


def test_encode_profile_update_refuses_what_only_pydantic_writes() -> None:
    with pytest.raises(TypeError):
        encode_profile_update(
            customer_id="c-1",
            version=1,
            traits={"id": 2**70},
            email=None,
            phone=None,
            timezone=None,
            locale=None,
            first_seen_at=_NOW,
            last_seen_at=_NOW,
            computed={},
            updated_at=_NOW,
        )
