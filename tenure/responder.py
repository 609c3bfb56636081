"""A provider stand-in fast enough not to bound a benchmark: a raw asyncio HTTP/1.1
server (keep-alive, ``Content-Length`` bodies) answering each request as
:func:`tenure.sinks.provider_answer` says (an FCM message name, an OAuth2 token, ...),
recording nothing.

:class:`tenure.sinks.HttpRecorder` (uvicorn in a thread, every request kept) answered
fewer posts per second than the dispatcher makes (docs/performance.md, "Dispatcher").
``python -m tenure.responder --port P --workers N`` runs ``N`` processes on one port
(``SO_REUSEPORT``: the kernel spreads the connections).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import signal
import socket
import threading
from http import HTTPStatus
from typing import cast

from tenure.sinks import provider_answer

_ids = itertools.count(1)


class ProviderResponder(asyncio.Protocol):
    """One connection: parse requests as they arrive, answer each at once."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._transport is not None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection":
                    close = value.strip().lower() == "close"
            if len(self._buffer) < end + 4 + length:
                return  # the body is still coming
            del self._buffer[: end + 4 + length]
            target = lines[0].split(" ")[1] if " " in lines[0] else "/"
            status, answer = provider_answer(target.split("?", 1)[0], next(_ids))
            body = json.dumps(answer).encode()
            head = (
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
            )
            self._transport.write(head.encode() + body)
            if close:
                self._transport.close()
                self._transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


def _listening(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    return sock


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(ProviderResponder, sock=_listening(port))
    async with server:
        await stop.wait()


def serve(port: int) -> None:
    """One worker, until SIGTERM or SIGINT (uvloop when installed)."""
    try:
        import uvloop

        uvloop.run(_serve(port))
    except ImportError:
        asyncio.run(_serve(port))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tenure.responder")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if args.workers <= 1:
        serve(args.port)
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    workers = [
        multiprocessing.Process(target=serve, args=(args.port,), daemon=True)
        for _ in range(args.workers)
    ]
    for worker in workers:
        worker.start()
    while not stop.wait(0.5):
        pass
    for worker in workers:
        worker.terminate()  # SIGTERM: it stops serving
    for worker in workers:
        worker.join(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
