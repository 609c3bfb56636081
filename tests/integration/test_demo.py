"""``tenure demo`` at a small size against a ``tenure dev`` stack started here: emails
from the journeys land in the Maildir, the simulated customers open and click them
(the funnel counts it), the win-back draws unique coupons, and a second run adds
nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import mailbox
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tenure.demo.catalog import SUBJECT_MARKERS, WINBACK_POOL
from tenure.demo.mail import read_maildir
from tenure.embedded import free_port, free_port_block
from tenure.services import SERVICES
from tests.integration.test_dev_stack import _wait_for_banner

pytestmark = pytest.mark.slow

#: ``tenure dev`` (its start waits as long as the services make progress)
DEV = "import sys; from tenure.cli import main; sys.exit(main(sys.argv[1:]))"


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in map(int, children):
        found += [child, *_descendants(child)]
    return found


def stop_dev(process: subprocess.Popen[str]) -> None:
    """Ctrl-C, as a person stops it; then whatever is left of what it started (a
    stop under libfaketime, or after a test's timeout, may leave children behind)."""
    started = _descendants(process.pid)
    process.send_signal(signal.SIGINT)
    try:
        process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=30)
    for pid in started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


@contextlib.contextmanager
def stack_dir() -> Iterator[Path]:
    """A directory for a whole stack's state, outside pytest's ``tmp_path``: pytest
    sessions running beside this one on a shared machine delete old numbered
    ``tmp_path`` roots, and PostgreSQL's data directory with them."""
    folder = Path(tempfile.mkdtemp(prefix="tenure-stack-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def base_port() -> int:
    """Consecutive free ports for every service and Prometheus, below the ephemeral range:
    the dev stack's SMTP sink and recorder (and, under pytest-xdist, other workers'
    servers) bind ephemeral ports before the services start."""
    return free_port_block(len(SERVICES) + 1)


def _demo(state: Path, base: int, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tenure",
            "demo",
            "--state-dir",
            str(state),
            "--base-port",
            str(base),
            "--customers",
            "120",
            "--seed",
            "3",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, COLUMNS="200"),
    )


def _journeys(maildir: Path) -> Counter[str]:
    found: Counter[str] = Counter()
    for email in read_maildir(maildir):
        for marker, journey, _ in SUBJECT_MARKERS:
            if marker in email.subject:
                found[journey] += 1
                break
    return found


def start_dev(
    state: Path,
    kafka_port: int,
    base: int,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[str]:
    """``tenure dev`` with the test's ports and state (``env``: extra variables)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            DEV,
            "dev",
            "--state-dir",
            str(state),
            "--kafka-port",
            str(kafka_port),
            "--base-port",
            str(base),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env={**os.environ, "TZ": "UTC", **(env or {})},
    )


@pytest.mark.timeout(1200)  # a whole stack started on a shared machine
async def test_the_demo_fills_the_maildir_and_a_second_run_adds_nothing() -> None:
    with stack_dir() as folder:
        await _demo_twice(folder / "state")


async def _demo_twice(state: Path) -> None:
    kafka_port, base = free_port(), base_port()
    process = start_dev(state, kafka_port, base)
    try:
        await asyncio.to_thread(_wait_for_banner, process, 600)
        first = await asyncio.to_thread(_demo, state, base, "--engage-seconds", "75")
        assert first.returncode == 0, first.stdout + first.stderr
        out = first.stdout
        assert "Where to look" in out and "What happened" in out, out
        created = next(line for line in out.splitlines() if line.startswith("created: "))
        assert "3 segment" in created and "5 journey" in created and "7 template" in created

        maildir = state / "mail" / "Maildir"
        journeys = _journeys(maildir)
        assert {"demo-welcome", "demo-post-purchase", "demo-winback", "demo-loyalty-gold"} <= set(
            journeys
        ), f"{journeys}\n{out}"
        emails = read_maildir(maildir)
        assert all(e.to.endswith("@demo3.example") for e in emails)
        assert any(e.coupon and e.subject.startswith("We miss you") for e in emails)
        # personalised: the first name, never a raw template
        assert not any("{{" in e.subject for e in emails)

        admin = {"Authorization": f"Bearer {(state / 'admin-token').read_text().strip()}"}
        async with httpx.AsyncClient(timeout=30, headers=admin) as client:
            metrics, dispatcher, journey = (
                f"http://127.0.0.1:{base + 4}",
                f"http://127.0.0.1:{base + 3}",
                f"http://127.0.0.1:{base + 2}",
            )
            pool = (await client.get(f"{dispatcher}/v1/coupon-pools/{WINBACK_POOL}")).json()
            assert pool["issued"] >= 1, pool
            funnel = (
                await client.get(f"{metrics}/v1/kpis/funnel", params={"group_by": "journey_id"})
            ).json()
            rows = funnel["rows"] if isinstance(funnel, dict) else funnel
            assert sum(r["opened"] for r in rows) > 0, rows
            assert sum(r["clicked"] for r in rows) > 0, rows
            experiments = (
                await client.get(
                    f"{metrics}/v1/experiments", params={"journey_id": "demo-post-purchase"}
                )
            ).json()
            assert {e["step_id"] for e in experiments} >= {"subject-test"}, experiments

            segmenter = f"http://127.0.0.1:{base + 1}"
            sample = [f"demo3-c{i:05d}" for i in range(0, 120, 7)]

            async def counts() -> dict[str, dict[str, int]]:
                out = {}
                for cid in sample:
                    answer = await client.get(f"{segmenter}/v1/profiles/{cid}")
                    if answer.status_code == 200:
                        # what only history and today send (a purchase may follow an email)
                        out[cid] = {
                            e["event"]: e["count"]
                            for e in answer.json()["events"]
                            if e["event"] != "Order Completed"
                        }
                return out

            before = await counts()
            assert len(before) >= len(sample) // 2, before
            demo_state = state / "demo" / "demo3-120.json"
            read_first = set(json.loads(demo_state.read_text())["read"])
            assert read_first, "the customers read no email"

            second = await asyncio.to_thread(_demo, state, base, "--engage-seconds", "3")
            assert second.returncode == 0, second.stdout + second.stderr
            assert "created: nothing new" in second.stdout, second.stdout
            assert "history: sent by an earlier run" in second.stdout
            assert "today: sent by an earlier run" in second.stdout
            await asyncio.sleep(5)
            assert await counts() == before
            for jid in ("demo-welcome", "demo-post-purchase"):
                versions = (await client.get(f"{journey}/v1/journeys/{jid}/versions")).json()
                assert len(versions) == 1, versions
        # every email once; the second run read none of the first run's again
        ids = [e.dispatch_id for e in read_maildir(maildir)]
        assert len(ids) == len(set(ids))
        said = re.search(r"read by customers this run: (\d+)", second.stdout)
        assert said is not None, second.stdout
        read_second = int(said[1])
        assert read_second <= len(set(ids) - read_first)
        assert len(mailbox.Maildir(str(maildir), create=False)) == len(ids)
    finally:
        await asyncio.to_thread(stop_dev, process)
