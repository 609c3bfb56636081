"""Read a request body: its media type, its content coding, its size, its JSON.

The size limits apply to the bytes after decoding: a ``gzip`` or ``deflate`` body
is inflated while it streams in, and reading stops with :class:`PayloadTooLarge`
as soon as the inflated bytes pass the limit, so a zip bomb costs at most the
limit in memory. The compressed bytes are held to the same limit.

Errors are the shared problems (:mod:`shared.http.problems`), each with its own code::

    PayloadTooLarge       TooLarge          413 payload_too_large
    UnsupportedEncoding   UnsupportedMedia  415 unsupported_encoding (with Accept-Encoding)
    UnsupportedMediaType  UnsupportedMedia  415 unsupported_media_type (not JSON; a form)
    InvalidEncoding       BadRequest        400 invalid_encoding (a corrupt or truncated stream)
    MalformedJson         BadRequest        400 invalid_json (not JSON, or nested too deep)
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request

from shared.http.problems import BadRequest, TooLarge, UnsupportedMedia

#: the deepest nesting of arrays and objects a body may have (the body itself is 1);
#: serialisers give up at a few hundred levels, so the cap is checked at parse time
MAX_JSON_DEPTH = 64
#: media types ingest reads as JSON; ``text/plain`` is what browsers' ``sendBeacon``
#: sends to avoid a CORS preflight, so it is read as JSON too
JSON_MEDIA_TYPES = frozenset({"application/json", "text/plain"})
#: what axios (and so RudderStack's Node SDK, which gzips by default) labels a
#: Buffer body it was given without a type: read as JSON when the body is JSON
#: (an object or an array), refused as 415 when it is form fields
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
ACCEPTED_ENCODINGS = "gzip, deflate"
_ID_KEYS = frozenset({"userId", "anonymousId", "groupId", "previousId", "messageId"})
#: integers orjson turns into floats: beyond 64 bits (u64 above, i64 below zero)
_WIDE_INTEGER = re.compile(rb"-\d{19}|\d{20}")
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1


class PayloadTooLarge(TooLarge):
    code = "payload_too_large"

    def __init__(self, *, limit: int) -> None:
        super().__init__(
            f"the request body exceeds the limit of {limit} bytes (after decompression)",
            limit_bytes=limit,
        )
        self.limit = limit


class UnsupportedEncoding(UnsupportedMedia):
    code = "unsupported_encoding"

    def __init__(self, detail: str, *, accepted: str) -> None:
        super().__init__(detail, headers={"Accept-Encoding": accepted}, accepted=accepted)


class UnsupportedMediaType(UnsupportedMedia):
    code = "unsupported_media_type"


class InvalidEncoding(BadRequest):
    code = "invalid_encoding"


class MalformedJson(BadRequest):
    code = "invalid_json"


@dataclass(frozen=True, slots=True)
class Body:
    """A parsed body, and whether any of its strings may hold a NUL character."""

    value: Any
    may_contain_nul: bool


def _media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def check_form_body(content_type: str | None, body: bytes) -> None:
    """A body labelled as a form is read only when it holds JSON (an object or array)."""
    if content_type is None or _media_type(content_type) != FORM_MEDIA_TYPE:
        return
    if body.lstrip()[:1] not in (b"{", b"["):
        raise UnsupportedMediaType(
            f"a body of form fields ({FORM_MEDIA_TYPE}) cannot be read; send application/json"
        )


def check_media_type(content_type: str | None) -> None:
    """Accept JSON, ``text/plain`` (sendBeacon), form-labelled JSON and no Content-Type."""
    if content_type is None:
        return
    media_type = _media_type(content_type)
    if (
        not media_type
        or media_type in JSON_MEDIA_TYPES
        or media_type == FORM_MEDIA_TYPE
        or media_type.endswith("+json")
    ):
        return
    raise UnsupportedMediaType(
        f"a body of type {media_type!r} cannot be read; send application/json"
    )


@dataclass(slots=True)
class CallHeaders:
    """The request headers ingest reads, found in one pass over the raw list (a lookup
    through Starlette's ``request.headers`` scans and decodes the list each time)."""

    authorization: str | None = None
    content_type: str | None = None
    content_encoding: str | None = None
    content_length: str | None = None


def call_headers(request: Request) -> CallHeaders:
    found = CallHeaders()
    for name, value in request.scope["headers"]:  # ASGI servers send names lowercased
        if name == b"authorization":
            found.authorization = value.decode("latin-1")
        elif name == b"content-type":
            found.content_type = value.decode("latin-1")
        elif name == b"content-encoding":
            found.content_encoding = value.decode("latin-1")
        elif name == b"content-length":
            found.content_length = value.decode("latin-1")
    return found


async def read_limited(request: Request, limit: int, headers: CallHeaders | None = None) -> bytes:
    """The whole decoded body, or PayloadTooLarge as soon as it is known to exceed ``limit``."""
    headers = headers or call_headers(request)
    check_media_type(headers.content_type)
    inflater = _inflater(headers.content_encoding)
    declared = headers.content_length
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit=limit)
    chunks: list[bytes] = []
    received = 0
    size = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(limit=limit)
        if inflater is not None:
            chunk = inflater.feed(chunk, limit - size)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit=limit)
        chunks.append(chunk)
    if inflater is not None:
        inflater.finish()
    body = b"".join(chunks)
    check_form_body(headers.content_type, body)
    return body


class _Inflater:
    """Streaming gzip / deflate decoding whose output never passes a given room."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._inflate: Any = None  # zlib's Decompress is not public; made on the first bytes
        self._head = b""

    def _start(self, first: bytes) -> Any:
        if self._coding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # "deflate" is zlib-wrapped in HTTP (RFC 9110), yet some clients send raw deflate
        wrapped = len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)

    def feed(self, data: bytes, room: int) -> bytes:
        """Inflate ``data``; at most ``room + 1`` bytes come out (one more means too large)."""
        out: list[bytes] = []
        produced = 0
        if self._inflate is None and self._coding == "deflate":
            # the first two bytes tell zlib-wrapped from raw deflate
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return b""
        while data:
            if self._inflate is None:
                self._inflate = self._start(data)
            elif self._inflate.eof:
                if self._coding != "gzip":
                    raise InvalidEncoding("the deflate stream has data after its end")
                self._inflate = self._start(data)  # the next member of a multi-member gzip
            try:
                piece = self._inflate.decompress(data, room + 1 - produced)
            except zlib.error as exc:
                raise InvalidEncoding(f"the {self._coding} stream is corrupt: {exc}") from None
            out.append(piece)
            produced += len(piece)
            if produced > room:
                break
            data = self._inflate.unused_data if self._inflate.eof else b""
        return b"".join(out)

    def finish(self) -> None:
        if self._inflate is None or not self._inflate.eof:
            raise InvalidEncoding(f"the {self._coding} stream is truncated")


def _inflater(header: str | None) -> _Inflater | None:
    codings = [c.strip().lower() for c in (header or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
        return _Inflater("deflate" if codings[0] == "deflate" else "gzip")
    raise UnsupportedEncoding(
        f"Content-Encoding {header!r} is not supported; send {ACCEPTED_ENCODINGS} or none",
        accepted=ACCEPTED_ENCODINGS,
    )


def parse_json(body: bytes) -> Body:
    """Parse with orjson, or exactly when an integer is wider than 64 bits.

    Such an integer under an id key (``userId``, ``messageId``, ...) at any depth
    keeps its exact digits, as a string; elsewhere it becomes a float, as orjson
    and most JSON parsers make it.
    """
    if not body:
        raise MalformedJson("the request body is empty; send a JSON object")
    wide = _WIDE_INTEGER.search(body) is not None
    try:
        value = (
            json.loads(body, parse_constant=_no_constant, parse_float=_finite_float)
            if wide
            else orjson.loads(body)
        )
    except (orjson.JSONDecodeError, ValueError, RecursionError) as exc:
        raise MalformedJson(f"the request body is not valid JSON: {exc}") from None
    # fewer brackets than the cap cannot nest deeper than it: no walk needed
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _depth_exceeds(
        value, MAX_JSON_DEPTH
    ):
        raise MalformedJson(f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    if wide:
        try:
            value = _narrow_wide_integers(value, under_id=False)
            # the standard library takes what orjson refuses (lone surrogates, NaN)
            orjson.dumps(value)
        except (OverflowError, orjson.JSONEncodeError) as exc:
            raise MalformedJson(f"the request body is not valid JSON: {exc}") from None
    # NUL reaches a JSON string only as the escape \u0000
    return Body(value, may_contain_nul=b"\\u0000" in body)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text} is infinity when parsed as a double")
    return value


def _containers(value: Any) -> Iterator[Any]:
    if type(value) is dict:
        yield from value.values()
    elif type(value) is list:
        yield from value


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        stack.extend(
            (child, depth + 1) for child in _containers(node) if type(child) in (dict, list)
        )
    return False


def _narrow_wide_integers(value: Any, *, under_id: bool) -> Any:
    """Recursion is bounded: the depth was checked first."""
    if type(value) is int and not _INT64_MIN <= value <= _UINT64_MAX:
        return str(value) if under_id else float(value)
    if type(value) is dict:
        return {k: _narrow_wide_integers(v, under_id=k in _ID_KEYS) for k, v in value.items()}
    if type(value) is list:
        return [_narrow_wide_integers(v, under_id=False) for v in value]
    return value


def find_nul(value: Any, path: str = "") -> str | None:
    """The path of the first key or string holding a NUL character, or None."""
    if type(value) is str:
        return path or "body" if "\x00" in value else None
    if type(value) is dict:
        for key, child in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in key:
                return where.replace("\x00", "\\u0000")
            found = find_nul(child, where)
            if found is not None:
                return found
    elif type(value) is list:
        for index, child in enumerate(value):
            found = find_nul(child, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None
