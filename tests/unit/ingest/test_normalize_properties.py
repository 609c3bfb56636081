"""Property tests: whatever a client sends, ingest either accepts a well-formed event
or names what is wrong; it never crashes and never alters what it accepted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.normalize import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    InvalidEvent,
    normalize,
)
from shared.events.customer_events import CustomerEvent, EventType

RECEIVED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

#: strings ingest stores: any text but NUL, which PostgreSQL cannot hold (refused at the edge)
storable = st.characters(codec="utf-8", exclude_characters="\x00")
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**9), 10**9)
    | st.text(storable, max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(storable, max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
ids = st.text(storable, min_size=1, max_size=40).filter(lambda s: s.strip() == s and s != "")
# hypothesis takes naive bounds and adds the time zone itself
instants = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2040, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@st.composite
def valid_calls(draw: st.DrawFn) -> tuple[EventType, dict[str, Any]]:
    call_type = draw(st.sampled_from(list(EventType)))
    body: dict[str, Any] = {}
    identity = draw(st.sampled_from(["user", "anonymous", "both"]))
    if identity in ("user", "both") or call_type is EventType.ALIAS:
        body["userId"] = draw(ids)
    if identity in ("anonymous", "both"):
        body["anonymousId"] = draw(ids)
    if call_type is EventType.TRACK:
        body["event"] = draw(ids)
    if call_type is EventType.GROUP:
        body["groupId"] = draw(ids)
    if call_type is EventType.ALIAS:
        body["previousId"] = draw(ids)
    if draw(st.booleans()):
        body["messageId"] = draw(ids)
    if draw(st.booleans()):
        body["timestamp"] = draw(instants).isoformat()
        if draw(st.booleans()):
            body["sentAt"] = draw(instants).isoformat()
    body["properties"] = draw(
        st.dictionaries(st.text(storable, max_size=10), json_values, max_size=4)
    )
    body["context"] = draw(st.dictionaries(st.text(storable, max_size=10), json_values, max_size=3))
    return call_type, body


@given(valid_calls())
@settings(max_examples=300)
def test_valid_calls_are_accepted_unchanged(call: tuple[EventType, dict[str, Any]]) -> None:
    call_type, body = call
    event = normalize(body, call_type=call_type, received_at=RECEIVED)
    assert event.type is call_type
    assert event.customer_id == (body.get("userId") or body["anonymousId"])
    assert event.key == event.customer_id.encode()
    assert event.properties == body["properties"]
    assert event.context == body["context"]
    assert event.received_at == RECEIVED
    if "messageId" in body:
        assert event.message_id == body["messageId"]
    # what goes on the topic decodes back to the same event
    assert CustomerEvent.from_bytes(event.to_bytes()) == event


@given(valid_calls())
@settings(max_examples=200)
def test_skew_correction_keeps_the_client_side_interval(
    call: tuple[EventType, dict[str, Any]],
) -> None:
    call_type, body = call
    event = normalize(body, call_type=call_type, received_at=RECEIVED)
    if "timestamp" not in body:
        assert event.timestamp == RECEIVED
    elif "sentAt" in body:
        client_interval = event.sent_at - event.original_timestamp  # type: ignore[operator]
        assert RECEIVED - event.timestamp == client_interval
    else:
        assert event.timestamp == event.original_timestamp


@given(
    st.one_of(
        json_values,
        st.dictionaries(
            st.sampled_from(
                [
                    "userId",
                    "anonymousId",
                    "event",
                    "timestamp",
                    "sentAt",
                    "properties",
                    "traits",
                    "messageId",
                    "groupId",
                    "previousId",
                    "type",
                    "context",
                ]
            ),
            json_values,
            max_size=8,
        ),
    )
)
@settings(max_examples=500)
def test_anything_else_is_accepted_or_named_never_a_crash(raw: Any) -> None:
    for call_type in (EventType.TRACK, None):
        try:
            event = normalize(raw, call_type=call_type, received_at=RECEIVED)
        except InvalidEvent as exc:
            assert exc.errors, "a rejection must say what is wrong"
            assert all(error.field and error.message for error in exc.errors)
        else:
            assert event.user_id or event.anonymous_id
            orjson.loads(event.to_bytes())


def test_numeric_ids_become_strings() -> None:
    event = normalize({"userId": 42, "event": "E"}, call_type=EventType.TRACK, received_at=RECEIVED)
    assert event.user_id == "42"


def test_naive_timestamps_are_utc() -> None:
    event = normalize(
        {"userId": "u", "event": "E", "timestamp": "2026-01-01T10:00:00"},
        call_type=EventType.TRACK,
        received_at=RECEIVED,
    )
    assert event.timestamp == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert event.timestamp.utcoffset() == timedelta(0)


any_instant = st.datetimes(timezones=st.just(UTC))


@given(any_instant, st.none() | any_instant)
@settings(max_examples=300)
def test_any_client_time_is_accepted_in_range_or_refused_never_a_crash(
    timestamp: datetime, sent_at: datetime | None
) -> None:
    body: dict[str, Any] = {"userId": "u", "event": "E", "timestamp": timestamp.isoformat()}
    if sent_at is not None:
        body["sentAt"] = sent_at.isoformat()
    try:
        event = normalize(body, call_type=EventType.TRACK, received_at=RECEIVED)
    except InvalidEvent as exc:
        assert exc.reason == "invalid_timestamp"
        assert exc.errors[0].field in ("timestamp", "sentAt")
    else:
        assert EARLIEST_TIMESTAMP <= event.timestamp < LATEST_TIMESTAMP


@given(valid_calls(), st.sampled_from(["userId", "event", "properties", "context"]))
@settings(max_examples=100)
def test_a_nul_anywhere_is_refused(call: tuple[EventType, dict[str, Any]], where: str) -> None:
    call_type, body = call
    if where in ("properties", "context"):
        body[where] = {**body[where], "nul": "a\x00b"}
    else:
        body[where] = "a\x00b"
    try:
        normalize(body, call_type=call_type, received_at=RECEIVED)
    except InvalidEvent as exc:
        assert exc.reason == "invalid_character"
    else:
        raise AssertionError("a NUL was accepted")
