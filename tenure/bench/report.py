"""Benchmark rows, their targets, and the table ``tenure bench`` prints."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Target:
    """What a scenario must reach; None means no bound on that figure."""

    min_ratio: float | None = None
    max_p99_ms: float | None = None
    #: no timeouts, no non-2xx answers, no connection errors
    clean: bool = True

    def misses(self, row: Row) -> list[str]:
        missed = []
        if self.min_ratio is not None and (row.ratio is None or row.ratio < self.min_ratio):
            missed.append(f"ratio < {self.min_ratio:g}x")
        if self.max_p99_ms is not None and (row.p99_ms is None or row.p99_ms > self.max_p99_ms):
            missed.append(f"p99 > {self.max_p99_ms:g} ms")
        if self.clean and (row.timeouts or row.non_2xx or row.errors):
            missed.append("timeouts/non-2xx/errors")
        return missed

    def describe(self) -> str:
        parts = []
        if self.min_ratio is not None:
            parts.append(f">={self.min_ratio:g}x")
        if self.max_p99_ms is not None:
            parts.append(f"p99<={self.max_p99_ms:g}ms")
        if self.clean:
            parts.append("0 err")
        return " ".join(parts)


@dataclass(slots=True)
class Row:
    """One scenario's figures, over its measured window (after warm-up)."""

    scenario: str
    #: "ingest" rows are what the targets are about; "baseline" rows are what they divide by
    kind: str
    connections: int | None
    events_per_s: float
    requests_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    timeouts: int = 0
    non_2xx: int = 0
    errors: int = 0
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    #: this row's rate divided by its baseline's: req/s for single events, events/s for batches
    ratio: float | None = None
    baseline: str | None = None
    target: Target | None = None
    #: cores busy in the window: "server" (the system measured), "broker", "loadgen",
    #: "machine" (all of it) and "other" (whatever else ran: neighbours, the OS)
    cores: dict[str, float] | None = None

    @property
    def server_us_per_event(self) -> float | None:
        """CPU microseconds the measured system spent per event (all its processes)."""
        if not self.cores or "server" not in self.cores or not self.events_per_s:
            return None
        return self.cores["server"] / self.events_per_s * 1e6

    @property
    def misses(self) -> list[str]:
        return self.target.misses(self) if self.target is not None else []

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "MISS" if self.misses else "PASS"

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = self.target.describe() if self.target is not None else None
        data["verdict"] = self.verdict or None
        data["misses"] = self.misses
        data["statuses"] = {str(k): v for k, v in self.statuses.items()}
        data["server_us_per_event"] = self.server_us_per_event
        return data


def percentile_ms(latencies_s: array[float] | list[float], fraction: float) -> float | None:
    """Nearest-rank percentile, in milliseconds; None without samples."""
    if not latencies_s:
        return None
    ordered = sorted(latencies_s)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank] * 1000.0


_COLUMNS = (
    ("scenario", "<", 26),
    ("conns", ">", 5),
    ("events/s", ">", 9),
    ("req/s", ">", 8),
    ("p50 ms", ">", 7),
    ("p99 ms", ">", 7),
    ("timeouts", ">", 8),
    ("non-2xx", ">", 7),
    ("conn err", ">", 8),
    ("cpu us/ev", ">", 9),
    ("other", ">", 5),
    ("ratio", ">", 6),
    ("target", "<", 24),
    ("", "<", 4),
)


#: a table's columns: heading, alignment (``<`` or ``>``), width
Columns = Sequence[tuple[str, str, int]]


def format_columns(columns: Columns, rows: Iterable[Sequence[str]]) -> str:
    """A plain-text table: the headings, a rule, then one line per row of cells."""

    def line(cells: Sequence[str]) -> str:
        pairs = zip(cells, columns, strict=True)
        return "  ".join(f"{cell:{align}{width}}" for cell, (_, align, width) in pairs).rstrip()

    lines = [line([name for name, _, _ in columns]), line(["-" * w for _, _, w in columns])]
    return "\n".join([*lines, *(line(cells) for cells in rows)])


def format_table(rows: list[Row]) -> str:
    return format_columns(
        _COLUMNS,
        (
            [
                row.scenario,
                _int(row.connections),
                f"{row.events_per_s:,.0f}",
                "-" if row.requests_per_s is None else f"{row.requests_per_s:,.0f}",
                _ms(row.p50_ms),
                _ms(row.p99_ms),
                str(row.timeouts),
                str(row.non_2xx),
                str(row.errors),
                _number(row.server_us_per_event),
                "-" if not row.cores else f"{row.cores.get('other', 0.0):.2f}",
                "-" if row.ratio is None else f"{row.ratio:.2f}x",
                row.target.describe() if row.target is not None else "(baseline)",
                row.verdict,
            ]
            for row in rows
        ),
    )


def format_legend(rows: list[Row]) -> str:
    """What each ratio divides by, and what the CPU columns mean."""
    lines = [
        f"ratio of {row.scenario} @{row.connections}: vs {row.baseline}"
        for row in rows
        if row.baseline
    ]
    lines.append(
        "cpu us/ev: CPU time of the measured system (server processes, or the raw producer) "
        "per event; other: cores used by processes outside the benchmark"
    )
    return "\n".join(lines)


def format_misses(rows: list[Row]) -> str:
    return "\n".join(f"MISS {row.scenario}: {', '.join(row.misses)}" for row in rows if row.misses)


def _int(value: int | None) -> str:
    return "-" if value is None else str(value)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


# --- figures: one measured number each (the database benches) ----------------------------


@dataclass(slots=True)
class Figure:
    """One measured figure, its baseline from the same run, and its target."""

    scenario: str
    value: float
    unit: str
    baseline: str = ""
    #: how many times the baseline's rate this is (or its time, for durations)
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        return "" if self.passed is None else ("PASS" if self.passed else "MISS")


_FIGURE_COLUMNS = (
    ("scenario", "<", 30),
    ("value", ">", 12),
    ("unit", "<", 9),
    ("baseline (same run)", "<", 30),
    ("ratio", ">", 7),
    ("target", "<", 16),
    ("", "<", 4),
)


def format_figures(figures: Sequence[Figure]) -> str:
    """The figures as a plain-text table, then their notes."""
    rows = (
        [
            f.scenario,
            f"{f.value:,.0f}" if abs(f.value) >= 1000 else f"{f.value:,.2f}",
            f.unit,
            f.baseline,
            "-" if f.ratio is None else f"{f.ratio:.3g}x",
            f.target,
            f.verdict,
        ]
        for f in figures
    )
    notes = [f"  {f.scenario}: {f.note}" for f in figures if f.note]
    return "\n".join(
        [format_columns(_FIGURE_COLUMNS, rows), *(["notes:", *notes] if notes else [])]
    )
