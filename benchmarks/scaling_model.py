"""The capacity model behind docs/scaling.md: from measured per-core figures to the
partitions, replicas, brokers and PostgreSQL layout each scale needs.

Run ``python benchmarks/scaling_model.py`` to print the table docs/scaling.md holds
(``--markdown``: exactly the doc's block; a test keeps the two equal). Every input
is a figure a ``tenure bench`` printed on a quiet 2-core machine (docs/performance.md
names the run) or, where this machine cannot measure (a replicated Apache Kafka
cluster, a 32-core database server), an assumption marked as such in ``ASSUMED``.

The arithmetic, per stage: CPU seconds per second = rate × share of events that
reach the stage × CPU µs per event; replicas = that over one core at the target
utilisation; partitions = enough for every replica of the widest consumer group,
rounded up to a multiple of 6 so that replicas can be added without repartitioning.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One consumer (or the HTTP front) and what it costs per event that reaches it."""

    name: str
    #: CPU µs of the service's own processes per event it handles (measured)
    service_us: float
    #: CPU µs of its PostgreSQL per event it handles (measured; 0: no database work)
    database_us: float
    #: share of customer events that reach the stage
    share: float
    #: where the figures come from
    source: str


#: measured on the quiet 2-core machine (docs/performance.md)
STAGES: tuple[Stage, ...] = (
    Stage("ingest", 41.0, 0.0, 1.0, "bench ingest, batch ×100 @64: 41 µs/event (2026-11-23)"),
    Stage(
        "segmenter",
        98.0,
        43.0,
        1.0,
        "bench segmenter, 2 replicas: 98 µs replica + 43 µs PostgreSQL per event",
    ),
    Stage(
        "journey",
        25.0,
        10.0,
        1.0,
        "bench journey, 10 journeys: 40,516 events/s on one core ≈ 25 µs (+ PG, estimated)",
    ),
    Stage(
        "dispatcher",
        1_235.0,
        400.0,
        0.03,
        "bench dispatcher email: 810 emails/s per process; 3 % of events send a message",
    ),
    Stage(
        "metrics",
        62.0,
        24.0,
        1.0,
        "bench metrics, 2 replicas: 23,125 events/s on 2 cores ≈ 86 µs in all",
    ),
)

#: what this machine cannot measure: stated, to be replaced by measurements
ASSUMED = {
    # a bounded, flat lag needs headroom: replicas run at most this busy
    "utilisation": 0.6,
    # average customer event on the wire, with headers (bench ingest's events: ~350 B)
    "event_bytes": 500,
    # the embedded broker is not Apache Kafka: a 3-broker cluster with acks=all and
    # idempotent producers sustains about this much inbound traffic per broker
    # (replication factor 3 triples what every broker writes)
    "broker_mb_s": 60.0,
    # one consumer replica reads one partition at most this fast (MB/s)
    "partition_mb_s": 5.0,
    # cores of one PostgreSQL server before it is split (a large cloud instance)
    "db_cores": 32,
    # profile, membership, score and recommendation rows per customer (segmenter)
    "segmenter_bytes_per_customer": 2_400,
    # runs, timers and deliveries kept per customer (journey + dispatcher, 90 days)
    "messaging_bytes_per_customer": 1_600,
    # customer facts, monthly activity and daily rollups per customer (metrics)
    "metrics_bytes_per_customer": 800,
    # one PostgreSQL server's comfortable size for these row-per-customer tables
    "db_comfortable_gb": 1_000,
    # past this, a server's big tables are partitioned (hash by customer natively,
    # time-ordered ones by day with pg_partman) so that vacuum, indexes and retention
    # work per partition
    "partition_gb": 100,
}

#: today's measured whole-pipeline figure (a 93,229-call purchase-history replay:
#: metrics, the slowest consumer, caught up at ≈ 5,500 events/s) and the customers the
#: KPI and refit benchmarks ran at
TODAY_EVENTS_S = 5_500
TODAY_CUSTOMERS = 1_000_000
#: the rows: a label, events/s, customers (the goal: 100k events/s, 100M customers)
ROWS: tuple[tuple[str, int, int], ...] = (
    *((f"{k}×", TODAY_EVENTS_S * k, TODAY_CUSTOMERS * k) for k in (1, 10)),
    ("goal", 100_000, 100_000_000),
    *((f"{k}×", TODAY_EVENTS_S * k, TODAY_CUSTOMERS * k) for k in (100, 1_000)),
)
#: partition counts are multiples of this (so 1, 2, 3 or 6 replicas divide them evenly)
PARTITION_STEP = 6


@dataclass(frozen=True)
class Plan:
    events_s: int
    customers: int
    replicas: dict[str, int]
    partitions: int
    brokers: int
    db_cores: dict[str, float]
    database: dict[str, str]


def plan(rate: int, customers: int) -> Plan:
    """What ``rate`` events/s over ``customers`` customers need."""
    usable = ASSUMED["utilisation"]
    replicas = {
        s.name: max(1, math.ceil(rate * s.share * s.service_us / 1e6 / usable)) for s in STAGES
    }
    db_cores = {s.name: rate * s.share * s.database_us / 1e6 / usable for s in STAGES}
    mb_s = rate * ASSUMED["event_bytes"] / 1e6
    by_bandwidth = math.ceil(mb_s / ASSUMED["partition_mb_s"])
    widest = max(replicas[s.name] for s in STAGES if s.name != "ingest")
    partitions = _round_up(max(widest, by_bandwidth, PARTITION_STEP), PARTITION_STEP)
    brokers = max(3, math.ceil(mb_s * 3 / ASSUMED["broker_mb_s"]))
    database = {
        "segmenter": _layout(
            db_cores["segmenter"],
            customers * ASSUMED["segmenter_bytes_per_customer"] / 1e9,
        ),
        "journey+dispatcher": _layout(
            db_cores["journey"] + db_cores["dispatcher"],
            customers * ASSUMED["messaging_bytes_per_customer"] / 1e9,
        ),
        "metrics": _layout(
            db_cores["metrics"], customers * ASSUMED["metrics_bytes_per_customer"] / 1e9
        ),
    }
    return Plan(rate, customers, replicas, partitions, brokers, db_cores, database)


def _layout(cores: float, gigabytes: float) -> str:
    """One server, native partitioning, or a distributed engine, and why."""
    if cores > ASSUMED["db_cores"] or gigabytes > 4 * ASSUMED["db_comfortable_gb"]:
        nodes = max(
            math.ceil(cores / ASSUMED["db_cores"]),
            math.ceil(gigabytes / ASSUMED["db_comfortable_gb"]),
        )
        return f"Citus, {max(nodes, 2)} workers ({cores:.0f} cores, {gigabytes:,.0f} GB)"
    if gigabytes > ASSUMED["partition_gb"]:
        return f"1 server, partitioned ({cores:.1f} cores, {gigabytes:,.0f} GB)"
    return f"1 server ({cores:.1f} cores, {gigabytes:,.0f} GB)"


def _round_up(value: int, step: int) -> int:
    return step * math.ceil(value / step)


def markdown() -> str:
    """The table docs/scaling.md holds."""
    names = [s.name for s in STAGES]
    header = (
        "| scale | events/s | customers | partitions per topic | brokers (RF 3) | "
        + " | ".join(f"{n} replicas" for n in names)
        + " | segmenter DB | journey + dispatcher DB | metrics DB |"
    )
    rule = "|" + " --- |" * (header.count("|") - 1)
    rows = [header, rule]
    for label, rate, customers in ROWS:
        p = plan(rate, customers)
        rows.append(
            f"| {label} | {p.events_s:,} | {p.customers:,} | {p.partitions} | {p.brokers} | "
            + " | ".join(str(p.replicas[n]) for n in names)
            + f" | {p.database['segmenter']} | {p.database['journey+dispatcher']} | "
            + f"{p.database['metrics']} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="only the doc's table")
    args = parser.parse_args()
    if not args.markdown:
        print("inputs (measured):")
        for s in STAGES:
            print(
                f"  {s.name:<11} {s.service_us:>7.0f} µs + {s.database_us:>5.0f} µs PG  {s.source}"
            )
        print("inputs (assumed):")
        for key, value in ASSUMED.items():
            print(f"  {key:<30} {value}")
        print()
    print(markdown())


if __name__ == "__main__":
    main()
