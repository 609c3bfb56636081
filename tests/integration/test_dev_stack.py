"""`tenure dev` as a newcomer runs it: everything up, a curl'd event flows end to end,
Ctrl-C stops it cleanly, and a taken port is named instead of a crash."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shared.events.customer_events import TOPIC
from tenure.embedded import free_port, free_port_block
from tenure.services import SERVICES
from tests.support.kafka import TopicTail, json_value

pytestmark = pytest.mark.slow


def _start(
    state: Path, kafka_port: int, base_port: int, *, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``tenure dev`` on the test's ports and state (``env``: its whole environment)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tenure",
            "dev",
            "--state-dir",
            str(state),
            "--kafka-port",
            str(kafka_port),
            "--base-port",
            str(base_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _wait_for_banner(process: subprocess.Popen[str], timeout_s: float = 400) -> str:
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if "Press Ctrl-C to stop." in line:
            return "".join(seen)
    raise AssertionError("tenure dev did not come up:\n" + "".join(seen))


def _base_port() -> int:
    """Consecutive free ports for every service and the local Prometheus, below the
    ephemeral range: under pytest-xdist other workers' servers bind ephemeral ports
    between this probe and the stack's start (a port taken there failed a start)."""
    return free_port_block(len(SERVICES) + 1)


async def test_dev_stack_takes_an_event_end_to_end(tmp_path: Path) -> None:
    kafka_port, base = free_port(), _base_port()
    process = _start(tmp_path / "state", kafka_port, base)
    try:
        banner = await asyncio.to_thread(_wait_for_banner, process)
        write_key = (tmp_path / "state" / "write-key").read_text().strip()
        admin = (tmp_path / "state" / "admin-token").read_text().strip()
        assert write_key in banner and f"http://127.0.0.1:{base}" in banner

        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(
                f"http://127.0.0.1:{base}/v1/track",
                auth=(write_key, ""),
                json={
                    "userId": "newcomer-1",
                    "event": "Order Completed",
                    "properties": {"revenue": 42},
                },
            )
            assert answer.status_code == 200, answer.text
            message_id = answer.json()["messageId"]

            tail = await TopicTail(f"127.0.0.1:{kafka_port}", TOPIC).start()
            try:
                record = await tail.wait_for(lambda r: message_id.encode() in r.value)
            finally:
                await tail.stop()
            assert json_value(record)["userId"] == "newcomer-1"

            for _ in range(100):
                profile = await client.get(
                    f"http://127.0.0.1:{base + 1}/v1/profiles/newcomer-1",
                    headers={"Authorization": f"Bearer {admin}"},
                )
                if profile.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert profile.status_code == 200, profile.text
            assert profile.json()["events"][0]["value_sum"] == 42

            metrics = f"http://127.0.0.1:{base + list(SERVICES).index('metrics')}"
            for _ in range(100):
                value = await client.get(
                    f"{metrics}/v1/kpis/customers", headers={"Authorization": f"Bearer {admin}"}
                )
                if value.status_code == 200 and value.json()["revenue"] == 42:
                    break
                await asyncio.sleep(0.1)
            assert value.json()["orders"] == 1, value.text
            assert (await client.get(f"{metrics}/report")).status_code == 200
            if shutil.which("prometheus"):
                assert "prometheus  http://127.0.0.1:" in banner
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = await asyncio.to_thread(process.communicate, timeout=60)
    assert process.returncode == 0, output
    assert "stopping" in output


def _child_serving(parent: int, service: str) -> int:
    """The pid of the ``tenure serve SERVICE`` child of ``parent``."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    for child in children:
        command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"serve" in command and command[command.index(b"serve") + 1] == service.encode():
            return int(child)
    raise AssertionError(f"no child serves {service}: {children}")


async def test_a_killed_service_is_restarted_and_the_broker_keeps_its_events(
    tmp_path: Path,
) -> None:
    kafka_port, base = free_port(), _base_port()
    process = _start(tmp_path / "state", kafka_port, base)
    output: list[str] = []
    try:
        output.append(await asyncio.to_thread(_wait_for_banner, process))
        write_key = (tmp_path / "state" / "write-key").read_text().strip()
        async with httpx.AsyncClient(timeout=10) as client:
            before = await client.post(
                f"http://127.0.0.1:{base}/v1/track",
                auth=(write_key, ""),
                json={"userId": "survivor", "event": "Before The Crash"},
            )
            assert before.status_code == 200, before.text
            killed = _child_serving(process.pid, "ingest")
            segmenter = _child_serving(process.pid, "segmenter")
            os.kill(killed, signal.SIGKILL)

            assert process.stdout is not None
            line = ""
            while "restarted the ingest service" not in line:
                line = await asyncio.to_thread(process.stdout.readline)
                assert line, "tenure dev ended:\n" + "".join(output)
                output.append(line)
            said = "".join(output)
            assert "the ingest service exited with -9; restarting it in 1 s" in said
            assert "The broker and the other services keep running." in said
            assert process.poll() is None
            assert _child_serving(process.pid, "segmenter") == segmenter
            assert _child_serving(process.pid, "ingest") != killed

            for _ in range(900):  # a busy machine: up to 90 s to start again
                try:
                    ready = await client.get(f"http://127.0.0.1:{base}/readyz")
                    if ready.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            after = await client.post(
                f"http://127.0.0.1:{base}/v1/track",
                auth=(write_key, ""),
                json={"userId": "survivor", "event": "After The Crash"},
            )
            assert after.status_code == 200, after.text

        tail = await TopicTail(f"127.0.0.1:{kafka_port}", TOPIC).start()
        try:
            for message in (before, after):
                message_id = message.json()["messageId"]
                await tail.wait_for_text(message_id, 30)
        finally:
            await tail.stop()
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.to_thread(process.communicate, timeout=60)
    assert process.returncode == 0, "".join(output) + rest


def test_a_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tenure",
                "dev",
                "--state-dir",
                str(tmp_path / "s"),
                "--kafka-port",
                str(port),
                "--base-port",
                str(_base_port()),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"port {port} (Kafka broker) is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def _processes_of(state: Path, kafka_port: int) -> list[str]:
    """Processes of a ``tenure dev`` run: the broker on ``kafka_port``, the services
    pointed at it, PostgreSQL in ``state`` (found by command line and environment)."""
    marks = (f"127.0.0.1:{kafka_port}".encode(), str(state).encode())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            environment = (entry / "environ").read_bytes()
        except OSError:
            continue
        if command and any(mark in command or mark in environment for mark in marks):
            words = command.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {words}")
    return found


def _wait_until_gone(state: Path, kafka_port: int, timeout_s: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout_s
    left = _processes_of(state, kafka_port)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _processes_of(state, kafka_port)
    return left


def test_a_failed_start_leaves_no_process(tmp_path: Path) -> None:
    """Services that are not ready within --ready-timeout: the start fails, all stop."""
    kafka_port, state = free_port(), tmp_path / "state"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tenure",
            "dev",
            "--state-dir",
            str(state),
            "--kafka-port",
            str(kafka_port),
            "--base-port",
            str(_base_port()),
            "--ready-timeout",
            "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1, result.stderr
    assert "cannot start: not ready after 0.5 s" in result.stderr
    assert "--ready-timeout" in result.stderr
    assert "Traceback" not in result.stderr
    assert _processes_of(state, kafka_port) == []
    assert not (state / "run" / "pids.json").exists()


def test_bad_settings_are_named_before_anything_starts(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tenure", "dev", "--state-dir", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "TENURE_LOG_LEVEL": "info",
            "TENURE_KAFKA_PARTITIONS": "six",
            "TENURE_INGEST_RATE_LIMT": "5",
        },
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert any(line.startswith("tenure: bad setting: TENURE_LOG_LEVEL=info: ") for line in lines)
    assert any("TENURE_KAFKA_PARTITIONS=six: " in line for line in lines)
    assert any(
        "TENURE_INGEST_RATE_LIMT" in line and "did you mean TENURE_INGEST_RATE_LIMIT?" in line
        for line in lines
    )
    assert "Traceback" not in result.stderr
    assert len(lines) == 4, result.stderr
    assert not (tmp_path / "s").exists()  # nothing started, nothing made


async def test_a_killed_tenure_dev_leaves_nothing_and_the_next_start_works(
    tmp_path: Path,
) -> None:
    kafka_port, base, state = free_port(), _base_port(), tmp_path / "state"
    process = _start(state, kafka_port, base)
    try:
        await asyncio.to_thread(_wait_for_banner, process)
        assert len(_processes_of(state, kafka_port)) >= len(SERVICES) + 1
        process.kill()  # SIGKILL: no chance to stop anything itself
        process.wait()
        left = await asyncio.to_thread(_wait_until_gone, state, kafka_port)
        assert left == [], left
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()

    again = _start(state, kafka_port, base)
    try:
        banner = await asyncio.to_thread(_wait_for_banner, again)
        assert f"127.0.0.1:{kafka_port}" in banner
    finally:
        again.send_signal(signal.SIGINT)
        output, _ = await asyncio.to_thread(again.communicate, timeout=60)
    assert again.returncode == 0, output
    assert await asyncio.to_thread(_wait_until_gone, state, kafka_port, 30) == []
