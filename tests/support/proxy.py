"""A TCP proxy on loopback that a test can cut and restore: a network outage on demand.

The broker advertises the proxy's port, so every client connection goes through
it; ``cut()`` drops every connection and refuses new ones, while the broker
keeps its data, as in a real network partition.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Listens on ``host:listen_port``; forwards to ``host:target_port``, or to the unix
    socket ``target_path`` when given (an embedded PostgreSQL listens on one only)."""

    def __init__(
        self,
        *,
        listen_port: int,
        target_port: int = 0,
        host: str = "127.0.0.1",
        target_path: str | None = None,
    ) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self.target_path = target_path
        self.host = host
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, self.host, self.listen_port)
        return self

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        self._writers.clear()

    async def restore(self) -> None:
        await self.start()

    async def stop(self) -> None:
        await self.cut()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            if self.target_path is not None:
                broker_r, broker_w = await asyncio.open_unix_connection(self.target_path)
            else:
                broker_r, broker_w = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        self._writers.update((client_w, broker_w))
        for reader, writer in ((client_r, broker_w), (broker_r, client_w)):
            task = asyncio.create_task(self._pipe(reader, writer))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()
