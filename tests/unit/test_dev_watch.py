"""What `tenure dev` knows of its servers: which PostgreSQL runs in a data directory,
whether a given database answers, and what the banner of a broker death says."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tenure.watch import Postmaster, Reachability, broker_loss_banner


def test_the_postmaster_of_a_data_directory_and_its_death(tmp_path: Path) -> None:
    assert Postmaster.of(tmp_path) is None  # no postmaster.pid: nothing runs
    child = subprocess.Popen(["sleep", "60"])
    (tmp_path / "postmaster.pid").write_text(f"{child.pid}\n{tmp_path}\n")
    postmaster = Postmaster.of(tmp_path)
    assert postmaster is not None and postmaster.pid == child.pid
    assert postmaster.alive()
    child.kill()
    child.wait()
    assert not postmaster.alive()
    assert Postmaster.of(tmp_path) is None  # a stale file names no running server


def test_a_reused_pid_is_not_the_postmaster(tmp_path: Path) -> None:
    (tmp_path / "postmaster.pid").write_text(f"{os.getpid()}\n")
    postmaster = Postmaster.of(tmp_path)
    assert postmaster is not None
    assert not Postmaster(postmaster.pid, "1").alive()  # same pid, another start time


def test_a_given_database_is_announced_once_when_it_stops_answering_and_once_back() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    database = Reachability(f"postgresql+asyncpg://u:p@127.0.0.1:{port}/tenure")
    assert database.changed() is None
    listener.close()
    down = database.changed()
    assert down is not None and "does not answer" in down and "not ours to restart" in down
    assert database.changed() is None  # said once
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()
        back = database.changed()
    assert back is not None and "answers again" in back


def test_a_unix_socket_url_is_checked_on_its_socket(tmp_path: Path) -> None:
    database = Reachability(f"postgresql+asyncpg://postgres:@/tenure?host={tmp_path}")
    assert not database.reachable()
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / ".s.PGSQL.5432"))
        server.listen()
        assert database.reachable()


def test_the_broker_banner_says_what_was_lost_and_from_when_to_resend() -> None:
    since = datetime(2026, 12, 8, 0, 40, 12, tzinfo=UTC)
    banner = broker_loss_banner(
        returncode=-9,
        since=since,
        now=since + timedelta(minutes=12, seconds=30),
        bootstrap_servers="127.0.0.1:9092",
    )
    assert "THE BROKER DIED (exit -9)" in banner
    assert "ingest acknowledged since 2026-12-08T00:40:12Z" in banner
    assert "12 min ago" in banner
    assert "Resend every event you sent since 2026-12-08T00:40:12Z" in banner
    assert "restarting the broker on 127.0.0.1:9092 and recreating its topics" in banner
    assert "messageId" in banner
