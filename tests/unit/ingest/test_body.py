"""Body parsing: exact wide integers, the nesting cap, what the slow path refuses."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.body import (
    MAX_JSON_DEPTH,
    InvalidEncoding,
    MalformedJson,
    PayloadTooLarge,
    _inflater,
    check_media_type,
    find_nul,
    parse_json,
)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"userId": 1, "n": NaN}1234567890123456789012',
        b'{"n": 1e400, "m": 123456789012345678901234}',
        b'{"s": "\\ud800", "m": 123456789012345678901234}',
        b'{"m": 123456789012345678901234',
    ],
)
def test_the_exact_path_refuses_what_orjson_refuses(raw: bytes) -> None:
    with pytest.raises(MalformedJson):
        parse_json(raw)


def test_wide_integers_keep_digits_under_id_keys_only() -> None:
    raw = (
        b'{"userId": 18446744073709551616, "x": {"groupId": -9223372036854775809},'
        b' "n": [1e2, 18446744073709551616, 18446744073709551615]}'
    )
    assert parse_json(raw).value == {
        "userId": "18446744073709551616",
        "x": {"groupId": "-9223372036854775809"},
        "n": [100.0, 1.8446744073709552e19, 18446744073709551615],
    }


def test_depth_cap_counts_the_body_as_one() -> None:
    assert parse_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH).value is not None
    with pytest.raises(MalformedJson):
        parse_json(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    # many brackets, little depth: accepted
    assert len(parse_json(b"[" + b",".join([b"[]"] * 500) + b"]").value) == 500


def test_nul_flag_and_path() -> None:
    parsed = parse_json(b'{"a": ["x", "y\\u0000"]}')
    assert parsed.may_contain_nul
    assert find_nul(parsed.value) == "a.1"
    assert not parse_json(b'{"a": "x"}').may_contain_nul


@pytest.mark.parametrize("content_type", ["text/html", "application/xml", "image/png"])
def test_media_types_other_than_json_are_refused(content_type: str) -> None:
    with pytest.raises(Exception, match="cannot be read"):
        check_media_type(content_type)


def _inflate(header: str, data: bytes, limit: int, chunk: int = 7) -> bytes:
    inflater = _inflater(header)
    assert inflater is not None
    out: list[bytes] = []
    for start in range(0, len(data), chunk):
        piece = inflater.feed(data[start : start + chunk], limit - sum(map(len, out)))
        out.append(piece)
        if sum(map(len, out)) > limit:
            raise PayloadTooLarge(limit=limit)
    inflater.finish()
    return b"".join(out)


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@given(st.binary(max_size=3000), st.integers(1, 64))
@settings(max_examples=100)
def test_every_coding_round_trips_in_any_chunking(data: bytes, chunk: int) -> None:
    encodings: dict[str, Any] = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "x-gzip": gzip.compress,
    }
    for name, encode in encodings.items():
        assert _inflate(name, encode(data), 3000, chunk) == data
    assert _inflate("deflate", _raw_deflate(data), 3000, chunk) == data
    # two gzip members are one body
    assert _inflate("gzip", gzip.compress(data) + gzip.compress(b"!"), 3001, chunk) == data + b"!"


def test_a_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge):
        _inflate("gzip", bomb, 10_000, chunk=len(bomb))


@pytest.mark.parametrize(
    "data",
    [
        b"not gzip at all",
        gzip.compress(b'{"a": 1}', mtime=0)[:-5],
        gzip.compress(b"x", mtime=0) + b"junk",
    ],
)
def test_corrupt_or_truncated_streams(data: bytes) -> None:
    with pytest.raises(InvalidEncoding):
        _inflate("gzip", data, 1000)
