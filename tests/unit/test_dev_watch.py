"""What `tenure dev` knows of its servers: which PostgreSQL runs in a data directory,
whether a given database answers, what the banner of a broker death says, and how it
asks the services to replay."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from tenure.watch import Postmaster, Reachability, broker_loss_banner, request_replays


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


def test_replays_are_asked_again_from_what_a_service_keeps() -> None:
    """A service keeping less than asked answers 422 with ``kept_since``: asked again
    from just after it; one without the route says so."""
    kept_since = "2026-12-08T01:00:00+00:00"
    asked: list[str] = []

    class Service(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            since = parse_qs(urlparse(self.path).query)["since"][0]
            asked.append(since)
            body: dict[str, object] = {"total": 3}
            status = 200
            if datetime.fromisoformat(since) < datetime.fromisoformat(kept_since):
                status = 422
                body = {"type": "urn:tenure:problem:older_than_window", "kept_since": kept_since}
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Service)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            nowhere = closed.getsockname()[1]
        answers = request_replays(
            {"journey": server.server_address[1], "ingest": nowhere},
            "token",
            datetime(2026, 12, 8, 0, 0, tzinfo=UTC),
        )
    finally:
        server.shutdown()
        server.server_close()
    assert asked == ["2026-12-08T00:00:00+00:00", "2026-12-08T01:00:01+00:00"]
    assert answers["journey"] == "replaying (3 messages, only since 2026-12-08T01:00:01Z is kept)"
    assert answers["ingest"].startswith("not asked")
