"""What ``tenure dev`` does when one of its servers dies: notice, say it, restart it.

- The embedded PostgreSQL: :class:`Postmaster` names the server running in a data
  directory (pid and start time from ``postmaster.pid``, so a reused pid is never
  taken for it). When it is gone, ``tenure dev`` prints one line and starts it again
  on the same data directory and socket (:meth:`tenure.embedded.EmbeddedPostgres.restart`);
  PostgreSQL replays its WAL, nothing committed is lost, and the services' pools
  reconnect by themselves (``pool_pre_ping``; the loops back off meanwhile).
- A database given by ``DATABASE_URL``: not ours to restart; :class:`Reachability`
  says once when it stops answering and once when it is back.
- The embedded broker keeps everything in memory: its death loses every message not
  yet consumed by every service. :func:`broker_loss_banner` says so, and from when
  to resend; ``tenure dev`` restarts it on the same port and recreates the topics,
  the services reconnect and rejoin their groups (they start from the earliest
  offset of the new, empty topics), and :func:`request_replays` asks each service to
  publish again what it had produced since then.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from shared.events import ALL_TOPICS
from shared.kafka.topics import (
    CannotFix,
    ensure_topics,
    fix_partition_count,
    partition_mismatches,
    with_dead_letters,
)
from shared.settings import KafkaSettings
from tenure.lifetime import start_time


@dataclass(frozen=True)
class Postmaster:
    """The PostgreSQL server of a data directory, as ``postmaster.pid`` names it."""

    pid: int
    started: str

    @classmethod
    def of(cls, pgdata: Path) -> Postmaster | None:
        """The server running in ``pgdata`` now, or None."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((pgdata / "postmaster.pid").read_text().split()[0])
            started = start_time(pid)
            if started is not None:
                return cls(pid, started)
        return None

    def alive(self) -> bool:
        return start_time(self.pid) == self.started


class Reachability:
    """Whether a database given by URL accepts connections (a TCP or unix-socket
    connect, no query): :meth:`changed` returns a line to print on each change."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        socket_dir = url.query.get("host")
        if isinstance(socket_dir, tuple):
            socket_dir = socket_dir[0]
        self.port = url.port or 5432
        self.unix = socket_dir if socket_dir and socket_dir.startswith("/") else None
        self.host = url.host or "127.0.0.1"
        self.up = True

    def reachable(self) -> bool:
        try:
            if self.unix is not None:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(2)
                    sock.connect(f"{self.unix}/.s.PGSQL.{self.port}")
            else:
                socket.create_connection((self.host, self.port), timeout=2).close()
        except OSError:
            return False
        return True

    def changed(self) -> str | None:
        up = self.reachable()
        if up == self.up:
            return None
        self.up = up
        if up:
            return (
                "the database at DATABASE_URL answers again; the services reconnect by themselves"
            )
        return (
            "the database at DATABASE_URL does not answer: it is not ours to restart. "
            "The services retry (backing off) until it is back."
        )


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def broker_loss_banner(
    *, returncode: int | None, since: datetime, now: datetime, bootstrap_servers: str
) -> str:
    """What a dead in-memory broker took with it, and what the operator should do."""
    rule = "=" * 76
    window = now - since
    minutes = int(window.total_seconds() // 60)
    lines = [
        rule,
        f"THE BROKER DIED (exit {returncode}). It kept everything in memory: all of it is lost.",
        "",
        "  Lost: every message not yet consumed by every service. That includes events",
        f"  ingest acknowledged since {iso(since)} (when this broker started,",
        f"  {minutes} min ago) that a service had not consumed yet, and what the services",
        "  had produced to each other (dispatch requests, profiles, outcomes) and not",
        "  consumed yet.",
        "",
        f"  Now: restarting the broker on {bootstrap_servers} and recreating its topics;",
        "  the services reconnect and rejoin their groups by themselves, from the start",
        "  of the new, empty topics; each service is then asked to publish again what its",
        "  outbox relayed since then (POST /v1/ops/replay: the last",
        "  TENURE_OUTBOX_REPLAY_WINDOW_S are kept, 1 h by default).",
        "",
        f"  Resend every event you sent since {iso(since)}",
        "  (ingest's /v1/track, /v1/identify, /v1/batch with the same messageId: a resent",
        "  event that was already applied is recognised and skipped).",
        rule,
    ]
    return "\n".join(lines)


async def recreate_topics(kafka: KafkaSettings) -> list[str]:
    """Every topic on a broker that lost them, with the configured partition count.

    A producer that reached the new broker first auto-created its topic with the
    broker's default count: such a topic (seconds old, its events in the resend
    window) is recreated (``tenure topics --fix --recreate``). Says what was done."""
    topics = with_dead_letters(ALL_TOPICS)
    done = [f"{len(await ensure_topics(kafka, topics))} topics created"]
    for mismatch in await partition_mismatches(kafka, topics):
        try:
            done.append(await fix_partition_count(kafka, mismatch, recreate=True))
        except CannotFix as exc:
            done.append(str(exc))
    return done


def request_replays(
    ports: Mapping[str, int], admin_token: str, since: datetime, *, timeout_s: float = 5.0
) -> dict[str, str]:
    """Ask every service to publish again what it produced since ``since``.

    The hook for a broker that lost its messages: ``POST /v1/ops/replay?since=`` on
    each service (admin; :mod:`shared.http.replay`). A service without that route
    (404/405) has nothing to replay. When ``since`` is older than what a service keeps
    (``TENURE_OUTBOX_REPLAY_WINDOW_S``), it is asked again from the oldest it keeps,
    and the answer says so. The answer per service is returned to be printed."""
    answers: dict[str, str] = {}
    with httpx.Client(timeout=timeout_s) as client:
        for name, port in ports.items():

            def ask(when: datetime, port: int = port) -> httpx.Response:
                return client.post(
                    f"http://127.0.0.1:{port}/v1/ops/replay",
                    params={"since": when.astimezone(UTC).isoformat()},
                    headers={"Authorization": f"Bearer {admin_token}"},
                )

            try:
                answer = ask(since)
                kept_since = _kept_since(answer)
                if kept_since is not None:
                    answer = ask(kept_since)
            except httpx.HTTPError as exc:
                answers[name] = f"not asked ({type(exc).__name__})"
                continue
            if answer.status_code in (404, 405):
                answers[name] = "no replay"
            elif answer.is_success:
                total = answer.json().get("total", "?")
                kept = f", only since {iso(kept_since)} is kept" if kept_since else ""
                answers[name] = f"replaying ({total} messages{kept})"
            else:
                answers[name] = f"replay refused ({answer.status_code})"
    return answers


def _kept_since(answer: httpx.Response) -> datetime | None:
    """From a replay refused because ``since`` is older than the window: a second later
    than the oldest time kept (the window moved on while we asked)."""
    if answer.status_code != 422:
        return None
    problem = answer.json()
    if problem.get("type") != "urn:tenure:problem:older_than_window":
        return None
    return datetime.fromisoformat(problem["kept_since"]) + timedelta(seconds=1)
