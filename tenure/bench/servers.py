"""The processes a benchmark runs against: broker, ingest, the bare baseline."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 40.0


@dataclass(frozen=True, slots=True)
class Server:
    """Where a server answers; ``process`` and ``log_path`` when we started it."""

    name: str
    host: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @classmethod
    def at(cls, name: str, url: str) -> Server:
        """A server someone else runs, at an ``http://host:port`` URL."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{name}: need an http:// URL, not {url!r}")
        return cls(name, parts.hostname, parts.port or 80)

    @property
    def pids(self) -> tuple[int, ...]:
        return (self.process.pid,) if self.process is not None else ()

    def wait_ready(self, path: str = "/readyz") -> None:
        url = f"http://{self.host}:{self.port}{path}"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self._log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name} was not ready at {url} after {READY_TIMEOUT_S:g}s:\n"
                    f"{self._log_tail()}"
                )
            time.sleep(0.2)

    def _log_tail(self, lines: int = 30) -> str:
        if self.log_path is None:
            return ""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass(frozen=True, slots=True)
class Broker:
    bootstrap_servers: str
    pid: int | None = None


@contextlib.contextmanager
def embedded_broker(state: Path) -> Iterator[Broker]:
    from tenure.embedded import EmbeddedBroker, free_port

    broker = EmbeddedBroker(free_port(), state / "broker.log")
    broker.start()
    try:
        assert broker.process is not None
        yield Broker(broker.bootstrap_servers, broker.process.pid)
    finally:
        broker.stop()


def ensure_topics(bootstrap_servers: str) -> None:
    from shared.events import ALL_TOPICS
    from shared.kafka.topics import ensure_topics as create
    from shared.kafka.topics import with_dead_letters
    from shared.settings import KafkaSettings

    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    asyncio.run(create(settings, with_dead_letters(ALL_TOPICS)))


@contextlib.contextmanager
def ingest_server(
    *, bootstrap_servers: str, write_key: str, workers: int, state: Path
) -> Iterator[Server]:
    """``python -m tenure serve ingest`` on a free port, with one write key."""
    from shared.auth import hash_token
    from tenure.embedded import free_port

    port = free_port()
    env = {
        **os.environ,
        "TENURE_KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "TENURE_HTTP_HOST": "127.0.0.1",
        "TENURE_HTTP_PORT": str(port),
        "TENURE_HTTP_WORKERS": str(workers),
        "TENURE_INGEST_WRITE_KEY_HASHES": hash_token(write_key),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # serve makes a fresh one for its workers
    command = [sys.executable, "-m", "tenure", "serve", "ingest"]
    with _running("ingest", command, env, port, state / "ingest.log") as server:
        yield server


@contextlib.contextmanager
def bare_server(*, workers: int, state: Path) -> Iterator[Server]:
    """:mod:`tenure.bench.bare` under uvicorn, as ``tenure serve`` runs ingest."""
    from tenure.embedded import free_port

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "tenure.bench.bare:app",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--workers={workers}",
        "--no-access-log",
        "--log-level=warning",
    ]
    with _running("bare baseline", command, dict(os.environ), port, state / "bare.log") as server:
        yield server


@contextlib.contextmanager
def _running(
    name: str, command: list[str], env: dict[str, str], port: int, log_path: Path
) -> Iterator[Server]:
    """Run a server for the block; SIGTERM it (uvicorn's graceful stop) afterwards."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield Server(name, "127.0.0.1", port, process, log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
