"""orjson where it agrees with the engine's ``json`` codec, ``json`` where it does not."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shared.db.jsonb import json_object, json_text

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
objects = st.dictionaries(st.text(), values, max_size=6)


@given(objects)
def test_the_text_reads_back_as_json_loads_reads_json_dumps(value: dict[str, Any]) -> None:
    assert json.loads(json_text(value)) == json.loads(json.dumps(value))


@given(objects)
def test_an_object_reads_as_json_loads_reads_it(value: dict[str, Any]) -> None:
    text_ = json.dumps(value)
    assert json_object(text_) == json.loads(text_)


def test_integers_beyond_64_bits_keep_every_digit() -> None:
    big = 2**70 + 1
    assert json_object(json_text({"n": big})) == {"n": big}


def test_nan_is_written_as_json_dumps_writes_it() -> None:
    assert json_text({"x": math.nan}) == '{"x": NaN}'
