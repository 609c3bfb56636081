"""Processes that end with ``tenure dev``: the kernel's parent-death signal, and the
run record that stops what a killed run left behind (never someone else's)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tenure.lifetime import OtherRunAlive, RunRecord, start_time


def _gone(pid: int, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if start_time(pid) is None:
            return True
        time.sleep(0.05)
    return False


def test_a_child_dies_with_its_parent(tmp_path: Path) -> None:
    """The parent is SIGKILLed: its child, started with die_with_parent, gets SIGTERM."""
    script = (
        "import subprocess, sys, time\n"
        "from tenure.lifetime import die_with_parent\n"
        "child = subprocess.Popen(['sleep', '600'], preexec_fn=die_with_parent())\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert start_time(child) is not None
    parent.kill()
    parent.communicate()
    assert _gone(child), "the child outlived its parent"


def test_the_next_run_stops_what_a_killed_run_left(tmp_path: Path) -> None:
    leftover = subprocess.Popen(["sleep", "600"])
    dead_owner = subprocess.Popen(["true"])
    dead_owner.wait()
    record = tmp_path / "run" / "pids.json"
    record.parent.mkdir()
    record.write_text(
        json.dumps(
            {
                "owner": [dead_owner.pid, "1"],
                "processes": {"broker": [leftover.pid, start_time(leftover.pid)]},
            }
        )
    )
    said: list[str] = []
    RunRecord(tmp_path).reap_previous(said.append)
    assert leftover.wait(timeout=15) is not None
    assert said == [
        f"stopping the broker (pid {leftover.pid}) left running by a previous tenure dev"
    ]
    assert not record.exists()


def test_a_reused_pid_is_left_alone(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "600"])
    try:
        record = tmp_path / "run" / "pids.json"
        record.parent.mkdir()
        # the recorded start time is not this process's: the pid was reused
        record.write_text(json.dumps({"owner": [0, ""], "processes": {"broker": [other.pid, "1"]}}))
        RunRecord(tmp_path).reap_previous(lambda _: None)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_run_whose_owner_still_runs_is_not_touched(tmp_path: Path) -> None:
    owner = subprocess.Popen(["sleep", "600"])
    try:
        record = tmp_path / "run" / "pids.json"
        record.parent.mkdir()
        record.write_text(
            json.dumps({"owner": [owner.pid, start_time(owner.pid)], "processes": {}})
        )
        mine = RunRecord(tmp_path)
        with pytest.raises(OtherRunAlive, match=f"another tenure dev \\(pid {owner.pid}\\)"):
            mine.reap_previous(lambda _: None)
        mine.clear()
        assert record.exists()
    finally:
        owner.kill()
        owner.wait()
