"""Packs of outbox messages: what is packed is unpacked, in order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.db.outbox_pack import pack, unpack
from shared.kafka.producer import Message

messages = st.builds(
    Message,
    topic=st.just("profiles"),
    key=st.none() | st.binary(max_size=40),
    value=st.binary(max_size=200),
    headers=st.lists(st.tuples(st.text(max_size=10), st.binary(max_size=10)), max_size=3).map(
        tuple
    ),
)


@given(st.lists(messages, max_size=30))
def test_unpack_gives_back_the_packed_messages_in_order(packed: list[Message]) -> None:
    assert unpack("profiles", pack(packed)) == packed


def test_an_empty_key_is_not_a_missing_key() -> None:
    assert unpack("t", pack([Message("t", b"", b"v"), Message("t", None, b"w")])) == [
        Message("t", b"", b"v"),
        Message("t", None, b"w"),
    ]


@given(st.lists(messages, min_size=1, max_size=5), st.data())
def test_a_pack_cut_short_is_refused(packed: list[Message], data: st.DataObject) -> None:
    whole = pack(packed)
    cut = data.draw(st.integers(min_value=1, max_value=len(whole) - 1))
    try:
        unpacked = unpack("profiles", whole[:cut])
    except ValueError:
        return
    # a cut that falls between two messages leaves a shorter, whole pack
    assert unpacked == packed[: len(unpacked)] and len(unpacked) < len(packed)


def test_garbage_is_refused() -> None:
    with pytest.raises(ValueError, match="cut short"):
        unpack("t", b"\x00\x00\x00\x09abc")
