"""Bad input gets a clear 4xx, never a 500, and never costs a valid neighbour in a batch."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest

from services.ingest.body import MAX_JSON_DEPTH
from tests.integration.ingest.conftest import AUTH, problem_code, problem_fields, rejected_indexes
from tests.support.kafka import TopicTail, json_value


def _track(**fields: Any) -> dict[str, Any]:
    return {"userId": "bad-input", "event": "Checked", "messageId": f"m-{uuid.uuid4()}", **fields}


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


async def test_skew_correction_overflow_is_a_400(client: httpx.AsyncClient) -> None:
    body = _track(timestamp="0001-01-01T00:00:00Z", sentAt="9999-12-31T23:59:59Z")
    answer = await client.post("/v1/track", json=body, headers=AUTH)
    assert answer.status_code == 400, answer.text
    assert problem_code(answer) == "invalid_timestamp"
    assert problem_fields(answer.json())[0] in ("timestamp", "sentAt")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"timestamp": "1969-12-31T23:59:59Z"}, "timestamp"),
        ({"timestamp": "2100-01-01T00:00:00Z"}, "timestamp"),
        ({"timestamp": "2026-01-01T00:00:00Z", "sentAt": "0001-01-01T00:00:00Z"}, "sentAt"),
        # both in range, but the corrected time is 150 years before now
        ({"timestamp": "1971-01-01T00:00:00Z", "sentAt": "2099-01-01T00:00:00Z"}, "timestamp"),
    ],
)
async def test_timestamps_outside_the_range_are_refused(
    client: httpx.AsyncClient, fields: dict[str, str], field: str
) -> None:
    answer = await client.post("/v1/track", json=_track(**fields), headers=AUTH)
    assert answer.status_code == 400, answer.text
    assert problem_fields(answer.json())[0] == field


async def test_a_batch_rejects_an_overflowing_call_by_index(
    client: httpx.AsyncClient, events_tail: TopicTail
) -> None:
    good = {"type": "track", **_track()}
    bad = {"type": "track", **_track(timestamp="0001-01-01T00:00:00Z")}
    body = {"batch": [bad, good], "sentAt": "9999-12-31T23:59:59Z"}
    answer = await client.post("/v1/batch", json=body, headers=AUTH)
    # sentAt applies to both calls, so both are out of range: 400, each by index
    assert answer.status_code == 400, answer.text
    assert problem_code(answer) == "invalid_batch"
    assert rejected_indexes(answer.json()) == [0, 1]

    body = {"batch": [{**bad, "sentAt": "9999-12-31T23:59:59Z"}, good]}
    answer = await client.post("/v1/batch", json=body, headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 1
    assert answer.json()["rejected"][0]["index"] == 0
    assert answer.json()["rejected"][0]["error"] == "invalid_timestamp"
    await events_tail.wait_for(lambda r: good["messageId"].encode() in r.value)


async def test_nesting_is_capped_at_parse_time(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/track", json=_track(properties=_nested(300)), headers=AUTH)
    assert answer.status_code == 400, answer.text
    assert problem_code(answer) == "invalid_json"
    assert str(MAX_JSON_DEPTH) in answer.json()["detail"]

    batch = {"batch": [{"type": "track", **_track(properties=_nested(300))}]}
    answer = await client.post("/v1/batch", json=batch, headers=AUTH)
    assert answer.status_code == 400, answer.text

    # the deepest accepted: the body, properties, then MAX_JSON_DEPTH - 2 more objects
    ok = _track(properties=_nested(MAX_JSON_DEPTH - 2))
    assert (await client.post("/v1/track", json=ok, headers=AUTH)).status_code == 200


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"userId": "a\x00b"}, "userId"),
        ({"anonymousId": "\x00", "userId": None}, "anonymousId"),
        ({"event": "Order\x00Completed"}, "event"),
        ({"properties": {"name": "x\x00"}}, "properties.name"),
        ({"properties": {"list": ["ok", "no\x00"]}}, "properties.list.1"),
        ({"context": {"k\x00ey": 1}}, "context.k\\u0000ey"),
    ],
)
async def test_nul_characters_are_refused_everywhere(
    client: httpx.AsyncClient, fields: dict[str, Any], field: str
) -> None:
    answer = await client.post("/v1/track", json=_track(**fields), headers=AUTH)
    assert answer.status_code == 400, answer.text
    assert problem_code(answer) == "invalid_character"
    assert problem_fields(answer.json())[0] == field


async def test_a_nul_in_a_batch_costs_only_its_own_call(
    client: httpx.AsyncClient, events_tail: TopicTail
) -> None:
    good = {"type": "track", **_track()}
    bad = {"type": "track", **_track(properties={"k": "v\x00"})}
    answer = await client.post("/v1/batch", json={"batch": [bad, good]}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    [rejected] = answer.json()["rejected"]
    assert (rejected["index"], rejected["error"]) == (0, "invalid_character")
    assert rejected["errors"][0]["field"] == "properties.k"
    await events_tail.wait_for(lambda r: good["messageId"].encode() in r.value)


async def test_a_literal_backslash_u0000_is_not_a_nul(
    client: httpx.AsyncClient, events_tail: TopicTail
) -> None:
    body = _track(properties={"path": "C:\\u0000"})  # a backslash, then the text u0000
    answer = await client.post("/v1/track", json=body, headers=AUTH)
    assert answer.status_code == 200, answer.text
    record = await events_tail.wait_for(lambda r: body["messageId"].encode() in r.value)
    assert json_value(record)["properties"]["path"] == "C:\\u0000"


async def test_integer_ids_beyond_64_bits_keep_their_digits(
    client: httpx.AsyncClient, events_tail: TopicTail
) -> None:
    ids = ["123456789012345678901234567890", "123456789012345678901234567891"]
    message_ids = []
    for customer in ids:
        message_id = f"m-{uuid.uuid4()}"
        message_ids.append(message_id)
        raw = (
            f'{{"userId": {customer}, "event": "Big", "messageId": "{message_id}",'
            f' "properties": {{"n": {customer}, "small": 7}}}}'
        )
        answer = await client.post(
            "/v1/track", content=raw, headers={**AUTH, "Content-Type": "application/json"}
        )
        assert answer.status_code == 200, answer.text
    for customer, message_id in zip(ids, message_ids, strict=True):
        record = await events_tail.wait_for_text(message_id)
        stored = json_value(record)
        assert stored["userId"] == customer
        assert record.key == customer.encode()
        # elsewhere a number beyond 64 bits is a float, as before; small ones stay ints
        assert stored["properties"] == {"n": float(customer), "small": 7}


async def test_beyond_64_bits_in_a_batch(client: httpx.AsyncClient, events_tail: TopicTail) -> None:
    message_id = f"m-{uuid.uuid4()}"
    raw = (
        f'{{"batch": [{{"type": "identify", "userId": -99999999999999999999,'
        f' "messageId": "{message_id}"}}]}}'
    )
    answer = await client.post("/v1/batch", content=raw, headers=AUTH)
    assert answer.status_code == 200, answer.text
    record = await events_tail.wait_for(lambda r: message_id.encode() in r.value)
    assert json_value(record)["userId"] == "-99999999999999999999"


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "application/json; charset=utf-8", "text/plain;charset=UTF-8"],
)
async def test_json_and_text_plain_are_read(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {**AUTH, **({"Content-Type": content_type} if content_type else {})}
    answer = await client.post("/v1/track", content=orjson.dumps(_track()), headers=headers)
    assert answer.status_code == 200, answer.text


async def test_json_labelled_as_a_form_is_read(client: httpx.AsyncClient) -> None:
    """axios labels a Buffer body as a form: RudderStack's Node SDK sends gzipped JSON so."""
    headers = {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    answer = await client.post("/v1/track", content=orjson.dumps(_track()), headers=headers)
    assert answer.status_code == 200, answer.text


async def test_form_fields_are_415(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/v1/track",
        content=b"userId=u&event=Signed+Up",
        headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 415, answer.text
    assert problem_code(answer) == "unsupported_media_type"
    assert "form fields" in answer.json()["detail"]


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=x", "application/xml"])
async def test_other_media_types_are_415(client: httpx.AsyncClient, content_type: str) -> None:
    answer = await client.post(
        "/v1/track", content=b'{"userId": "u"}', headers={**AUTH, "Content-Type": content_type}
    )
    assert answer.status_code == 415, answer.text
    assert problem_code(answer) == "unsupported_media_type"


#: (issue 21) ingest keeps its own checks (services/ingest/body.py, normalize.py) rather
#: than `shared.validation`: each kind of value storage cannot hold, in each place, and on
#: both parse paths (orjson; the standard library when an integer is wider than 64 bits)
_WIDE = ', "properties": {"big": 123456789012345678901234567890'
_UNSTORABLE = [
    ('"event": "a\\ud800"', "a lone leading surrogate in a value"),
    ('"event": "a\\udc00"', "a lone trailing surrogate in a value"),
    ('"userId": "\\ud800"', "a lone surrogate in an id"),
    ('"properties": {"\\ud800": 1}', "a lone surrogate in a key"),
    ('"properties": {"total": NaN}', "NaN"),
    ('"properties": {"total": Infinity}', "Infinity"),
    ('"properties": {"total": -Infinity}', "-Infinity"),
    ('"properties": {"total": 1e999}', "a number that is infinity as a double"),
]


@pytest.mark.parametrize("wide", [False, True], ids=["orjson", "wide-integers"])
@pytest.mark.parametrize(("member", "what"), _UNSTORABLE, ids=[w for _, w in _UNSTORABLE])
async def test_lone_surrogates_nan_and_infinity_are_400s(
    client: httpx.AsyncClient, member: str, what: str, wide: bool
) -> None:
    fields = {"userId": "bad-input", "event": "Checked", "messageId": f"m-{uuid.uuid4()}"}
    key = member.split(":")[0].strip().strip('"')
    fields.pop(key, None)
    head = orjson.dumps(fields).decode()[1:-1]
    extra = _WIDE + "}" if wide and not member.startswith('"properties"') else ""
    raw = "{" + head + ", " + member + extra + "}"
    if wide and member.startswith('"properties"'):
        raw = raw.replace(
            '"properties": {', '"properties": {"big": 123456789012345678901234567890, '
        )
    answer = await client.post(
        "/v1/track", content=raw.encode(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert answer.status_code == 400, (what, answer.text)
    assert answer.headers["content-type"] == "application/problem+json"
    assert problem_code(answer) == "invalid_json"
