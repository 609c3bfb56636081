"""A 500 carries its request id and leaves the keep-alive connection usable (uvicorn, loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import h11
import orjson
import pytest
from fastapi import FastAPI

from shared.http.app import create_service_app
from tests.support.servers import serving


@asynccontextmanager
async def _nothing(app: FastAPI) -> AsyncIterator[None]:
    yield


def _app() -> FastAPI:
    app = create_service_app(title="t", description="t", version="1", lifespan=_nothing)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    @app.post("/boom-after-reading")
    async def boom_after_reading() -> None:
        raise KeyError("another bug")

    return app


class Connection:
    """One HTTP/1.1 connection, requests sent one after another on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT)

    async def request(
        self, method: str, path: str, body: bytes = b"", request_id: str | None = None
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        if self.h11.our_state is h11.DONE:
            self.h11.start_next_cycle()
        headers = [("host", "t"), ("content-length", str(len(body)))]
        if request_id:
            headers.append(("x-request-id", request_id))
        self.writer.write(self.h11.send(h11.Request(method=method, target=path, headers=headers)))
        self.writer.write(self.h11.send(h11.Data(data=body)) or b"")
        self.writer.write(self.h11.send(h11.EndOfMessage()))
        await self.writer.drain()
        status, headers_out, chunks = 0, {}, []
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(self.reader.read(65536), 5)
                self.h11.receive_data(data)  # b"" (closed) makes h11 raise on the next event
                continue
            if isinstance(event, h11.Response):
                status, headers_out = event.status_code, dict(event.headers)
            elif isinstance(event, h11.Data):
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return status, headers_out, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection")


@pytest.mark.parametrize("given_id", [None, "req-abc-123"])
async def test_a_500_carries_its_request_id_and_keeps_the_connection(
    given_id: str | None,
) -> None:
    async with serving(_app()) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        connection = Connection(reader, writer)
        try:
            for method, path, body in [
                ("GET", "/boom", b""),
                ("POST", "/boom-after-reading", b'{"x": 1}'),
                ("GET", "/boom", b""),
            ]:
                status, headers, payload = await connection.request(method, path, body, given_id)
                assert status == 500
                answer = orjson.loads(payload)
                assert headers[b"content-type"] == b"application/problem+json"
                assert answer["type"] == "urn:tenure:problem:internal_error"
                assert (answer["status"], answer["title"]) == (500, "Internal Server Error")
                assert answer["request_id"] == headers[b"x-request-id"].decode()
                if given_id:
                    assert answer["request_id"] == given_id
            status, _, payload = await connection.request("GET", "/healthz")
            assert (status, orjson.loads(payload)) == (200, {"status": "ok"})
        finally:
            writer.close()
