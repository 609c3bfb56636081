"""CPU time of process trees and of the whole machine, and a process's resident
memory, from ``/proc`` (Linux).

On a shared 2-core machine a rate alone cannot tell a slower server from a busier
neighbour; the CPU each side used over the measured window can. Elsewhere than
Linux every figure is None.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True, slots=True)
class CpuSample:
    at: float
    #: CPU seconds of each group of process trees, by group name
    groups: dict[str, float]
    #: CPU seconds the whole machine spent busy (all cores)
    machine: float


def sample(
    at: float, groups: Mapping[str, Collection[int]], *, alone: Collection[int] = ()
) -> CpuSample | None:
    """CPU seconds so far of each group (its processes and their descendants; those in
    ``alone`` without theirs: a bench process whose children are the embedded servers)."""
    if not _PROC.is_dir():
        return None
    totals = tree_cpu(groups, alone=alone)
    return CpuSample(at, totals, _machine_busy())


def tree_cpu(
    groups: Mapping[str, Collection[int]],
    *,
    alone: Collection[int] = (),
    reaped: bool = False,
) -> dict[str, float]:
    """CPU seconds so far of each group's processes and their descendants (those in
    ``alone`` without theirs); with ``reaped``, the exited children's time too (a reaped
    child's time is in its parent's ``cutime``/``cstime``)."""
    stats = _process_stats(reaped=reaped)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    totals = {}
    for name, roots in groups.items():
        seen: set[int] = set()
        todo = [pid for pid in roots if pid in stats]
        while todo:
            pid = todo.pop()
            if pid not in seen:
                seen.add(pid)
                if pid not in alone:
                    todo.extend(children.get(pid, ()))
        totals[name] = sum(stats[pid][1] for pid in seen)
    return totals


def cores_used(first: CpuSample | None, last: CpuSample | None) -> dict[str, float] | None:
    """Cores each group kept busy between two samples, and the machine and the rest."""
    if first is None or last is None or last.at <= first.at:
        return None
    span = last.at - first.at
    used = {name: (last.groups[name] - first.groups[name]) / span for name in first.groups}
    used["machine"] = (last.machine - first.machine) / span
    used["other"] = max(0.0, used["machine"] - sum(v for k, v in used.items() if k != "machine"))
    return used


def resident_mb(pid: int | None = None) -> float | None:
    """The resident set size of a process (this one by default), in MB."""
    try:
        pages = int((_PROC / str(pid or "self") / "statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * _PAGE / 2**20


def _process_stats(*, reaped: bool = False) -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds) of every process we can read (with ``reaped``,
    its reaped children's too)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_bytes()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: split after the last ")"
        fields = raw[raw.rindex(b")") + 2 :].split()
        # utime stime, and cutime cstime with ``reaped``
        ticks = sum(int(f) for f in fields[11 : 15 if reaped else 13])
        stats[int(entry.name)] = (int(fields[1]), ticks / _TICKS)
    return stats


def _machine_busy() -> float:
    first = (_PROC / "stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(value) for value in first[:8]]  # user nice system idle iowait irq softirq steal
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / _TICKS
