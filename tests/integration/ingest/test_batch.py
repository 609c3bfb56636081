"""/v1/batch accepts the valid calls and reports the invalid ones by index."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson

from tests.integration.ingest.conftest import AUTH, problem_code, problem_fields, rejected_indexes
from tests.support.kafka import TopicTail, json_value


def _call(kind: str = "track", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": kind, "messageId": f"b-{uuid.uuid4()}", "userId": "batch-user"}
    if kind == "track":
        base["event"] = "Batch Event"
    return {**base, **fields}


async def test_valid_neighbours_of_invalid_calls_are_stored(
    client: httpx.AsyncClient, events_tail: TopicTail
) -> None:
    calls = [
        _call(),
        _call(event=None),  # track without event
        _call("identify", traits={"plan": "pro"}),
        {"type": "nonsense", "userId": "u"},  # unknown type
        _call("page", name="Home"),
        "not an object",
        _call(properties={"blob": "x" * 33_000}),  # one event over 32 KB
    ]
    answer = await client.post("/v1/batch", json={"batch": calls}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    payload = answer.json()
    assert payload["success"] is True
    assert payload["accepted"] == 3
    rejected = {r["index"]: r for r in payload["rejected"]}
    assert set(rejected) == {1, 3, 5, 6}
    assert rejected[1]["errors"][0]["field"] == "event"
    assert rejected[3]["errors"][0]["field"] == "type"
    assert rejected[6]["error"] == "too_large"

    for index in (0, 2, 4):
        message_id = calls[index]["messageId"]  # type: ignore[index]
        record = await events_tail.wait_for_text(message_id)
        assert json_value(record)["type"] == calls[index]["type"]  # type: ignore[index]
    for index in (1, 6):
        message_id = calls[index]["messageId"]  # type: ignore[index]
        assert not any(message_id.encode() in r.value for r in events_tail.records)


async def test_batch_sent_at_corrects_every_event(
    client: httpx.AsyncClient, events_tail: TopicTail
) -> None:
    calls = [_call(timestamp="2026-01-01T10:00:00Z"), _call(timestamp="2026-01-01T10:30:00Z")]
    body = {"batch": calls, "sentAt": "2026-01-01T11:00:00Z"}
    assert (await client.post("/v1/batch", json=body, headers=AUTH)).status_code == 200
    stored = []
    for call in calls:
        record = await events_tail.wait_for_text(call["messageId"])
        stored.append(json_value(record))
    from datetime import datetime, timedelta

    for item, minutes in zip(stored, (60, 30), strict=True):
        received = datetime.fromisoformat(item["receivedAt"])
        assert datetime.fromisoformat(item["timestamp"]) == received - timedelta(minutes=minutes)


async def test_all_invalid_is_400(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/batch", json={"batch": [{"type": "track"}, 42]}, headers=AUTH)
    assert answer.status_code == 400
    assert problem_code(answer) == "invalid_batch"
    problem = answer.json()
    assert rejected_indexes(problem) == [0, 1]
    assert {e["type"] for e in problem["errors"]} == {"missing_field", "not_an_object"}
    assert problem_fields(problem, skip=3)[-1] == "body"  # 42 is not an object


async def test_empty_or_missing_batch_is_400(client: httpx.AsyncClient) -> None:
    bodies: list[dict[str, object]] = [{"batch": []}, {}, {"batch": {"type": "track"}}]
    for body in bodies:
        answer = await client.post("/v1/batch", json=body, headers=AUTH)
        assert answer.status_code == 400
        assert problem_code(answer) == "invalid_batch"
        assert problem_fields(answer.json()) == ["batch"]


async def test_batch_over_500kb_is_413(client: httpx.AsyncClient) -> None:
    calls = [_call(properties={"blob": "x" * 20_000}) for _ in range(30)]
    body = orjson.dumps({"batch": calls})
    assert len(body) > 500 * 1024
    answer = await client.post(
        "/v1/batch", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.json()["limit_bytes"] == 500 * 1024


async def test_import_is_an_alias_of_batch(
    client: httpx.AsyncClient, events_tail: TopicTail
) -> None:
    call = _call()
    answer = await client.post("/v1/import", json={"batch": [call]}, headers=AUTH)
    assert answer.status_code == 200
    await events_tail.wait_for(lambda r: call["messageId"].encode() in r.value)
