"""Read a request body with a size limit, before any of it is parsed."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request


class PayloadTooLarge(Exception):
    def __init__(self, *, limit: int, size: int | None) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit
        self.size = size


class MalformedJson(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit=limit, size=int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit=limit, size=None)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    if not body:
        raise MalformedJson("the request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(f"the request body is not valid JSON: {exc}") from None
