"""Compressed bodies: gzip and deflate on every endpoint, limits on the inflated bytes."""

from __future__ import annotations

import gzip
import uuid
import zlib
from collections.abc import Callable

import httpx
import orjson
import pytest

from tests.integration.ingest.conftest import AUTH, problem_code
from tests.support.kafka import TopicTail, json_value


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


CODINGS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip": ("gzip", gzip.compress),
    "deflate": ("deflate", zlib.compress),
    "raw-deflate": ("deflate", _raw_deflate),
}
ENDPOINTS = ["track", "identify", "page", "screen", "group", "alias", "batch", "import"]


def _body(endpoint: str, message_id: str) -> dict[str, object]:
    call: dict[str, object] = {
        "userId": "gz-user",
        "messageId": message_id,
        "event": "Zipped",
        "groupId": "g",
        "previousId": "p",
    }
    if endpoint in ("batch", "import"):
        return {"batch": [{**call, "type": "track"}]}
    return call


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("coding", sorted(CODINGS))
async def test_every_endpoint_reads_compressed_bodies(
    client: httpx.AsyncClient, events_tail: TopicTail, endpoint: str, coding: str
) -> None:
    header, encode = CODINGS[coding]
    message_id = f"gz-{uuid.uuid4()}"
    answer = await client.post(
        f"/v1/{endpoint}",
        content=encode(orjson.dumps(_body(endpoint, message_id))),
        headers={**AUTH, "Content-Encoding": header, "Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    record = await events_tail.wait_for(lambda r: message_id.encode() in r.value)
    assert json_value(record)["userId"] == "gz-user"


async def test_a_zip_bomb_is_413(client: httpx.AsyncClient) -> None:
    padding = b" " * 20_000_000
    bomb = gzip.compress(b'{"batch": [' + padding + b"]}")
    assert len(bomb) < 100_000  # well under the compressed limit
    answer = await client.post(
        "/v1/batch", content=bomb, headers={**AUTH, "Content-Encoding": "gzip"}
    )
    assert answer.status_code == 413, answer.text
    assert problem_code(answer) == "payload_too_large"
    assert answer.json()["limit_bytes"] == 500 * 1024


async def test_the_event_limit_applies_to_the_inflated_single_call(
    client: httpx.AsyncClient,
) -> None:
    body = orjson.dumps({"userId": "u", "event": "Big", "properties": {"blob": "x" * 40_000}})
    answer = await client.post(
        "/v1/track", content=gzip.compress(body), headers={**AUTH, "Content-Encoding": "gzip"}
    )
    assert answer.status_code == 413, answer.text


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br"])
async def test_an_unknown_encoding_is_415(client: httpx.AsyncClient, encoding: str) -> None:
    answer = await client.post(
        "/v1/track", content=b"{}", headers={**AUTH, "Content-Encoding": encoding}
    )
    assert answer.status_code == 415, answer.text
    assert problem_code(answer) == "unsupported_encoding"
    assert answer.headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize(
    ("encoding", "content"),
    [
        ("gzip", b'{"userId": "u", "event": "E"}'),  # not compressed at all
        ("gzip", gzip.compress(b'{"userId": "u", "event": "E"}', mtime=0)[:-6]),  # truncated
        ("deflate", b"\x78\x9c garbage"),
    ],
)
async def test_a_corrupt_stream_is_400_invalid_encoding(
    client: httpx.AsyncClient, encoding: str, content: bytes
) -> None:
    answer = await client.post(
        "/v1/track", content=content, headers={**AUTH, "Content-Encoding": encoding}
    )
    assert answer.status_code == 400, answer.text
    assert problem_code(answer) == "invalid_encoding"


async def test_identity_is_no_coding(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/v1/track",
        content=orjson.dumps({"userId": "u", "event": "Plain"}),
        headers={**AUTH, "Content-Encoding": "identity"},
    )
    assert answer.status_code == 200, answer.text
