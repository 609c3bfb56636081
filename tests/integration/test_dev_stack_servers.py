"""`tenure dev` watches its servers: a SIGKILLed embedded PostgreSQL is restarted and
the services reconnect; a SIGKILLed broker is announced (what was lost, from when to
resend), restarted with its topics, and the services rejoin their groups from the
start of the new, empty topics. After each, an event flows end to end."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.events import ALL_TOPICS
from tenure.embedded import free_port
from tenure.lifetime import start_time
from tests.integration.test_demo import base_port, stack_dir
from tests.integration.test_dev_stack import _start as start_tenure_dev
from tests.support.kafka import TopicTail

pytestmark = pytest.mark.slow


class Output:
    """Every line ``tenure dev`` prints, read in the background."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._process = process
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line)

    def close(self) -> None:
        """After the process ended: the rest of its output read, the pipe closed."""
        self._thread.join(timeout=10)
        assert self._process.stdout is not None
        self._process.stdout.close()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    async def wait_for(self, marker: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while marker not in self.text:
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {marker!r} from tenure dev:\n{self.text}")
            await asyncio.sleep(0.2)
        return self.text


def _start(state: Path, kafka_port: int, base_port: int) -> subprocess.Popen[str]:
    """``tenure dev`` with its own servers, whatever servers the suite was given."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "TENURE_DATABASE_URL", "TENURE_KAFKA_BOOTSTRAP_SERVERS")
    }
    return start_tenure_dev(state, kafka_port, base_port, env=environment)


async def _track(client: httpx.AsyncClient, base: int, write_key: str, user: str) -> None:
    """Posts an event, retrying while ingest answers 503 (its broker is away)."""
    for _ in range(600):
        answer = await client.post(
            f"http://127.0.0.1:{base}/v1/track",
            auth=(write_key, ""),
            json={"userId": user, "event": "Order Completed", "properties": {"revenue": 7}},
        )
        if answer.status_code != 503:
            break
        await asyncio.sleep(0.2)
    assert answer.status_code == 200, answer.text


async def _profile_appears(
    client: httpx.AsyncClient, base: int, admin: str, user: str, revenue: int = 7
) -> None:
    """The segmenter (port base + 1) has folded ``user``'s events up to ``revenue`` in
    all, within two minutes."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            profile = await client.get(
                f"http://127.0.0.1:{base + 1}/v1/profiles/{user}",
                headers={"Authorization": f"Bearer {admin}"},
            )
            events = profile.json().get("events") if profile.status_code == 200 else None
            if events and events[0]["value_sum"] == revenue:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.5)
    raise AssertionError(f"no profile of {user} in the segmenter")


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _consumed_again(bootstrap: str, topic: str, key: bytes) -> None:
    """A record of ``key`` is on ``topic`` and the dispatcher's group committed past it."""
    tail = await TopicTail(bootstrap, topic).start()
    try:
        record = await tail.wait_for(lambda r: r.key == key, within_s=60)
    finally:
        await tail.stop()
    # the group's committed offset, read as a member would (not joining the group)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="tenure-dispatcher")
    await reader.start()
    try:
        partition = TopicPartition(topic, record.partition)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            committed = await reader.committed(partition)
            if committed is not None and committed > record.offset:
                return
            await asyncio.sleep(0.5)
    finally:
        await reader.stop()
    raise AssertionError(f"the dispatcher did not consume the replayed {topic} record")


async def test_killed_postgres_and_broker_are_restarted_and_events_flow_again() -> None:
    with stack_dir() as folder:
        await _kill_postgres_then_the_broker(folder / "state")


async def _kill_postgres_then_the_broker(state: Path) -> None:
    kafka_port, base = free_port(), base_port()
    process = _start(state, kafka_port, base)
    output = Output(process)
    try:
        await output.wait_for("Press Ctrl-C to stop.", 400)
        write_key = (state / "write-key").read_text().strip()
        admin = (state / "admin-token").read_text().strip()
        async with httpx.AsyncClient(timeout=10) as client:
            # the segmenter's position on this customer's partition is past 0 when the
            # broker dies: after it, the same customer's event is at offset 0 again
            await _track(client, base, write_key, "victim")
            await _profile_appears(client, base, admin, "victim")

            # PostgreSQL, SIGKILLed: restarted on the same socket, services reconnect
            postmaster = int((state / "postgres" / "postmaster.pid").read_text().split()[0])
            os.kill(postmaster, signal.SIGKILL)
            await output.wait_for("PostgreSQL restarted", 120)
            assert f"PostgreSQL (pid {postmaster}) died; restarting it" in output.text
            assert output.text.count("PostgreSQL restarted") == 1
            await _track(client, base, write_key, "after-postgres")
            await _profile_appears(client, base, admin, "after-postgres")

            # the broker, SIGKILLed: the banner, the broker back with its topics
            pids = json.loads((state / "run" / "pids.json").read_text())["processes"]
            broker = pids["broker"][0]
            os.kill(broker, signal.SIGKILL)
            said = await output.wait_for("asked the services to publish again", 120)
            assert "broker restarted on" in said
            assert "THE BROKER DIED (exit -9)" in said
            assert "Resend every event you sent since 20" in said
            assert "asked the services to publish again" in said
            for name in ("segmenter", "journey", "dispatcher", "metrics"):
                assert f"{name} replaying (" in said
            assert "ingest no replay" in said
            assert start_time(broker) is None
            assert set(ALL_TOPICS) <= await _topics(f"127.0.0.1:{kafka_port}")
            # the victim's profile, published before the broker died, is on the new
            # broker again (replayed) and the dispatcher's consumer took it
            await _consumed_again(f"127.0.0.1:{kafka_port}", "profiles", b"victim")
            await _track(client, base, write_key, "victim")
            await _profile_appears(client, base, admin, "victim", revenue=14)
            assert process.poll() is None
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.to_thread(process.wait, 90)
        await asyncio.to_thread(output.close)
    assert process.returncode == 0, output.text
