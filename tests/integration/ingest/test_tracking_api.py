"""Every tracking endpoint stores what it accepts on customer.events, as the Segment spec says."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from tests.integration.ingest.conftest import (
    AUTH,
    OTHER_WRITE_KEY,
    basic,
    problem_code,
    problem_fields,
)
from tests.support.kafka import TopicTail, json_value

CALLS: dict[str, dict[str, Any]] = {
    "track": {"userId": "u-track", "event": "Order Completed", "properties": {"revenue": 12.5}},
    "identify": {"userId": "u-identify", "traits": {"email": "a@example.com", "plan": "pro"}},
    "page": {"anonymousId": "anon-page", "name": "Pricing", "properties": {"path": "/pricing"}},
    "screen": {"userId": "u-screen", "name": "Home"},
    "group": {"userId": "u-group", "groupId": "acme", "traits": {"seats": 12}},
    "alias": {"userId": "u-alias", "previousId": "anon-alias"},
}


def _with_id(call: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    message_id = f"m-{uuid.uuid4()}"
    return message_id, {**call, "messageId": message_id}


@pytest.mark.parametrize("call_type", sorted(CALLS))
async def test_each_call_is_on_the_topic_keyed_by_customer(
    client: httpx.AsyncClient, events_tail: TopicTail, call_type: str
) -> None:
    message_id, body = _with_id(CALLS[call_type])
    answer = await client.post(f"/v1/{call_type}", json=body, headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"success": True, "messageId": message_id}

    record = await events_tail.wait_for(lambda r: message_id.encode() in r.value)
    stored = json_value(record)
    assert stored["type"] == call_type
    assert stored["messageId"] == message_id
    assert record.key == (body.get("userId") or body["anonymousId"]).encode()
    for field, value in body.items():
        assert stored[field] == value
    assert datetime.fromisoformat(stored["receivedAt"]) <= datetime.now(UTC)


async def test_message_id_is_generated_when_missing(
    client: httpx.AsyncClient, events_tail: TopicTail
) -> None:
    marker = uuid.uuid4().hex
    answer = await client.post("/v1/track", json={"userId": "u1", "event": marker}, headers=AUTH)
    assert answer.status_code == 200
    generated = answer.json()["messageId"]
    record = await events_tail.wait_for(lambda r: marker.encode() in r.value)
    assert json_value(record)["messageId"] == generated


async def test_timestamp_is_corrected_for_client_clock_skew(
    client: httpx.AsyncClient, events_tail: TopicTail
) -> None:
    message_id, body = _with_id({"userId": "u-skew", "event": "Skewed"})
    # the client's clock runs 2 hours ahead: it stamped the event 5 minutes before sending
    client_now = datetime.now(UTC) + timedelta(hours=2)
    body["timestamp"] = (client_now - timedelta(minutes=5)).isoformat()
    body["sentAt"] = client_now.isoformat()
    before = datetime.now(UTC)
    assert (await client.post("/v1/track", json=body, headers=AUTH)).status_code == 200
    stored = json_value(await events_tail.wait_for(lambda r: message_id.encode() in r.value))

    received = datetime.fromisoformat(stored["receivedAt"])
    corrected = datetime.fromisoformat(stored["timestamp"])
    assert before <= received <= datetime.now(UTC)
    assert corrected == received - timedelta(minutes=5)
    assert datetime.fromisoformat(stored["originalTimestamp"]) == client_now - timedelta(minutes=5)


async def test_without_timestamp_the_event_happened_when_received(
    client: httpx.AsyncClient, events_tail: TopicTail
) -> None:
    message_id, body = _with_id({"userId": "u-now", "event": "Now"})
    assert (await client.post("/v1/track", json=body, headers=AUTH)).status_code == 200
    stored = json_value(await events_tail.wait_for(lambda r: message_id.encode() in r.value))
    assert stored["timestamp"] == stored["receivedAt"]
    assert "originalTimestamp" not in stored


async def test_write_key_in_the_body_is_accepted(
    client: httpx.AsyncClient, events_tail: TopicTail
) -> None:
    message_id, body = _with_id({"userId": "u-body-key", "event": "E"})
    answer = await client.post("/v1/track", json={**body, "writeKey": OTHER_WRITE_KEY})
    assert answer.status_code == 200, answer.text
    await events_tail.wait_for(lambda r: message_id.encode() in r.value)


@pytest.mark.parametrize(
    ("headers", "body_key", "expected"),
    [
        ({}, None, "send the write key"),
        (basic("wrong-key"), None, "not valid"),
        ({}, "wrong-key", "not valid"),
        ({"Authorization": "Bearer test-write-key"}, None, "send the write key"),
        ({"Authorization": "Basic %%%"}, None, "send the write key"),
    ],
    ids=["none", "wrong-basic", "wrong-body", "not-basic", "garbled-basic"],
)
async def test_missing_or_wrong_write_key_is_401(
    client: httpx.AsyncClient,
    events_tail: TopicTail,
    headers: dict[str, str],
    body_key: str | None,
    expected: str,
) -> None:
    marker = uuid.uuid4().hex
    body: dict[str, Any] = {"userId": "u", "event": marker}
    if body_key:
        body["writeKey"] = body_key
    answer = await client.post("/v1/track", json=body, headers=headers)
    assert answer.status_code == 401
    assert problem_code(answer) == "unauthorized"
    assert expected in answer.json()["detail"]
    assert answer.headers["www-authenticate"].startswith("Basic")
    # and nothing of it reached the topic (a later accepted event proves the tail is current)
    message_id, probe = _with_id({"userId": "u", "event": "probe"})
    assert (await client.post("/v1/track", json=probe, headers=AUTH)).status_code == 200
    await events_tail.wait_for(lambda r: message_id.encode() in r.value)
    assert not any(marker.encode() in r.value for r in events_tail.records)


@pytest.mark.parametrize(
    ("body", "field", "error"),
    [
        ({"event": "E"}, "userId", "missing_field"),
        ({"userId": "u"}, "event", "missing_field"),
        ({"userId": "u", "event": "E", "timestamp": "last tuesday"}, "timestamp", "invalid_field"),
        ({"userId": "u", "event": "E", "properties": [1, 2]}, "properties", "invalid_field"),
        ({"userId": "u", "event": "E", "sentAt": "soon"}, "sentAt", "invalid_field"),
        ({"userId": {"id": 1}, "event": "E"}, "userId", "invalid_field"),
    ],
    ids=["no-identity", "no-event", "bad-timestamp", "bad-properties", "bad-sentAt", "bad-userId"],
)
async def test_invalid_track_is_400_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str, error: str
) -> None:
    answer = await client.post("/v1/track", json=body, headers=AUTH)
    assert answer.status_code == 400
    assert problem_code(answer) == error
    assert field in problem_fields(answer.json())


@pytest.mark.parametrize(
    ("call", "body", "field"),
    [
        ("alias", {"userId": "u"}, "previousId"),
        ("alias", {"anonymousId": "a", "previousId": "p"}, "userId"),
        ("group", {"userId": "u"}, "groupId"),
    ],
)
async def test_call_specific_required_fields(
    client: httpx.AsyncClient, call: str, body: dict[str, Any], field: str
) -> None:
    answer = await client.post(f"/v1/{call}", json=body, headers=AUTH)
    assert answer.status_code == 400
    assert problem_fields(answer.json()) == [field]


@pytest.mark.parametrize(
    ("content", "detail"),
    [(b"{not json", "not valid JSON"), (b"", "empty"), (b"[1, 2]", "JSON object")],
    ids=["malformed", "empty", "array"],
)
async def test_malformed_bodies_are_400(
    client: httpx.AsyncClient, content: bytes, detail: str
) -> None:
    answer = await client.post(
        "/v1/track", content=content, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert detail in orjson.dumps(answer.json()).decode()


async def test_event_over_32kb_is_413(client: httpx.AsyncClient) -> None:
    body = {"userId": "u", "event": "Big", "properties": {"blob": "x" * (32 * 1024)}}
    answer = await client.post("/v1/track", json=body, headers=AUTH)
    assert answer.status_code == 413
    assert answer.json()["limit_bytes"] == 32 * 1024


async def test_event_just_under_32kb_is_accepted(client: httpx.AsyncClient) -> None:
    body: dict[str, Any] = {"userId": "u", "event": "Big", "properties": {"blob": ""}}
    body["properties"]["blob"] = "x" * (32 * 1024 - len(orjson.dumps(body)) - 1)
    assert len(orjson.dumps(body)) < 32 * 1024
    answer = await client.post(
        "/v1/track",
        content=orjson.dumps(body),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text


async def test_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"userId": "u", "event": "E", "properties": {"blob": "'
        for _ in range(40):
            yield b"x" * 1024
        yield b'"}}'

    answer = await client.post("/v1/track", content=chunks(), headers=AUTH)
    assert answer.status_code == 413
