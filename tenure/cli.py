"""The ``tenure`` command: run the stack, one service, migrations, topics, benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tenure.bench import TARGETS as BENCH_TARGETS
from tenure.services import SERVICES

DESCRIPTION = "Tenure: run the stack, one service, migrations, topics, benchmarks."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tenure", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"tenure {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = sub.add_parser("dev", help="run the whole stack locally (embedded broker and database)")
    dev.add_argument(
        "--kafka-port", type=int, default=9092, help="port of the embedded broker (default 9092)"
    )
    dev.add_argument(
        "--base-port",
        type=int,
        default=None,
        help="give the services consecutive ports from this one "
        "(default: ingest 8001, segmenter 8002, …)",
    )
    dev.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the embedded database, keys and logs live (default ./.tenure)",
    )
    dev.add_argument(
        "--exit-when-ready",
        action="store_true",
        help="start everything, print the banner, then stop (a smoke test)",
    )
    dev.add_argument(
        "--ready-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="the longest the start may take in all while every service makes progress "
        "(default: TENURE_DEV_READY_TIMEOUT_S, 600)",
    )

    demo = sub.add_parser(
        "demo",
        help="against the running stack: a shop's segments, templates and five journeys, "
        "then a simulated population of customers (emails land in the dev Maildir)",
    )
    demo.add_argument(
        "--customers", type=int, default=3000, help="customers to simulate (default 3000)"
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.add_argument(
        "--engage-seconds",
        type=float,
        default=150.0,
        help="how long the customers read and act on their email (default 150)",
    )
    demo.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the dev stack's state directory: write key, admin token, Maildir (default ./.tenure)",
    )
    demo.add_argument(
        "--base-port", type=int, default=None, help="the --base-port `tenure dev` was given"
    )
    for name in ("ingest", "segmenter", "journey", "dispatcher", "metrics"):
        demo.add_argument(f"--{name}-url", default=None, help=f"the {name} service's URL")
    demo.add_argument("--write-key", default=None, help="default: <state-dir>/write-key")
    demo.add_argument("--admin-token", default=None, help="default: <state-dir>/admin-token")
    demo.add_argument(
        "--maildir", type=Path, default=None, help="default: <state-dir>/mail/Maildir"
    )

    serve = sub.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("service", choices=sorted(SERVICES))
    serve.add_argument("--checked", action="store_true", help=argparse.SUPPRESS)

    doc = sub.add_parser(
        "settings-doc", help="write docs/settings.md, every setting of every service"
    )
    doc.add_argument(
        "--output", type=Path, default=Path("docs/settings.md"), help="default docs/settings.md"
    )
    doc.add_argument(
        "--check", action="store_true", help="only say whether the file is current (exit 1 if not)"
    )

    sub.add_parser("migrate", help="apply every service's database migrations")
    topics = sub.add_parser(
        "topics",
        help="create the Kafka topics (and their DLQs); report partition counts that differ",
    )
    topics.add_argument(
        "--fix",
        action="store_true",
        help="add partitions to a topic that has fewer than TENURE_KAFKA_PARTITIONS",
    )
    topics.add_argument(
        "--recreate",
        action="store_true",
        help="with --fix, where the broker cannot add partitions (the embedded one), "
        "delete the topic and its messages and create it anew",
    )

    faults = sub.add_parser(
        "faults",
        help="kill each part of a fresh embedded stack mid-stream and count the emails",
    )
    faults.add_argument(
        "--customers", type=int, default=100, help="customers per fault (default 100)"
    )
    faults.add_argument(
        "--fault",
        action="append",
        default=None,
        metavar="FAULT",
        help="a fault to run (repeatable; default: every one): "
        "none, ingest, segmenter, journey, dispatcher, 'dispatcher x3', metrics, postgres, broker",
    )
    faults.add_argument(
        "--rate", type=float, default=20.0, help="customers sent per second (default 20)"
    )
    bench = sub.add_parser("bench", help="run a benchmark and print ratios to its baselines")
    bench.add_argument("target", choices=sorted(BENCH_TARGETS))
    bench.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    bench.add_argument("--quick", action="store_true", help="short scenarios (a smoke run)")
    bench.add_argument(
        "--soak",
        type=float,
        default=None,
        metavar="SECONDS",
        help="segmenter: seconds of steady load while RSS is sampled (default 600; 5 if --quick)",
    )
    bench.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="idle: seconds of idle measured (default 300; 30 if --quick)",
    )
    bench.add_argument(
        "--steps",
        type=_rates,
        default=None,
        metavar="RATES",
        help="e2e: the stepped rates, events/s, comma-separated "
        "(default 1000,2000,4000,8000,12000,16000; 1000,2000,4000 if --quick)",
    )
    bench.add_argument(
        "--step-seconds",
        type=float,
        default=None,
        metavar="SECONDS",
        help="e2e: seconds per step, lag flat over its last minute (default 300; 12 if --quick)",
    )
    return parser


def _rates(text: str) -> list[int]:
    try:
        rates = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of rates: {text!r}") from None
    if not rates or min(rates) < 1:
        raise argparse.ArgumentTypeError("rates must be positive integers")
    return rates


def _version() -> str:
    try:
        return version("tenure")
    except PackageNotFoundError:
        return "unknown"


def _settings_ok(services: list[str], *, warn: bool = True, dev: bool = False) -> bool:
    """Check the services' settings; print one line per bad value, and unknown variables."""
    from tenure.settings_check import check

    errors, warnings = check(services, unknown=warn, dev=dev)
    if warn:
        for line in warnings:
            print(f"tenure: warning: {line}", file=sys.stderr)
    for line in errors:
        print(f"tenure: bad setting: {line}", file=sys.stderr)
    if errors:
        print("tenure: nothing was started; see docs/settings.md", file=sys.stderr)
    return not errors


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "settings-doc":
        from tenure.settings_check import reference

        text = reference()
        if args.check:
            current = args.output.exists() and args.output.read_text() == text
            print(f"{args.output} is {'current' if current else 'out of date'}")
            return 0 if current else 1
        args.output.write_text(text)
        print(f"wrote {args.output}")
        return 0
    if args.command == "dev" and not _settings_ok(list(SERVICES), dev=True):
        return 2
    if args.command == "serve" and not _settings_ok([args.service], warn=not args.checked):
        return 2
    if args.command == "dev":
        from tenure.dev import DevOptions, run_dev
        from tenure.embedded import project_state_dir

        return run_dev(
            DevOptions(
                kafka_port=args.kafka_port,
                base_port=args.base_port,
                exit_when_ready=args.exit_when_ready,
                ready_timeout_s=args.ready_timeout,
                state_dir=(args.state_dir or project_state_dir()).resolve(),
            )
        )
    if args.command == "faults":
        from tenure.faults import FAULTS, FaultOptions, run_faults

        unknown = [f for f in args.fault or () if f not in FAULTS]
        if unknown or args.customers < 1:
            print(f"tenure faults: unknown fault(s) {unknown} or --customers < 1", file=sys.stderr)
            return 2
        run_faults(
            FaultOptions(
                customers=args.customers,
                faults=tuple(args.fault or FAULTS),
                rate_per_s=args.rate,
            )
        )
        return 0
    if args.command == "demo":
        import dataclasses

        from tenure.demo import DemoOptions, run_demo
        from tenure.demo.client import Endpoints
        from tenure.embedded import project_state_dir

        if args.customers < 1:
            print("tenure demo: --customers must be at least 1", file=sys.stderr)
            return 2
        endpoints = Endpoints.from_base_port(args.base_port)
        given = {
            name: getattr(args, f"{name}_url").rstrip("/")
            for name in ("ingest", "segmenter", "journey", "dispatcher", "metrics")
            if getattr(args, f"{name}_url")
        }
        return run_demo(
            DemoOptions(
                state_dir=(args.state_dir or project_state_dir()).resolve(),
                customers=args.customers,
                seed=args.seed,
                engage_s=args.engage_seconds,
                endpoints=dataclasses.replace(endpoints, **given),
                write_key=args.write_key,
                admin_token=args.admin_token,
                maildir=args.maildir,
            )
        )
    if args.command == "serve":
        from tenure.serve import serve

        serve(args.service)
        return 0
    if args.command == "migrate":
        from shared.settings import ServiceSettings
        from tenure.migrate import migrate_all

        url = ServiceSettings().database.url.get_secret_value()
        print(f"migrated: {', '.join(migrate_all(url)) or 'nothing to migrate'}")
        return 0
    if args.command == "topics":
        from tenure.topics import run_topics

        return asyncio.run(run_topics(fix=args.fix, recreate=args.recreate))
    if args.command == "bench":
        from tenure.bench import run_bench

        extra: dict[str, object] = {"soak_s": args.soak} if args.soak is not None else {}
        if extra and args.target != "segmenter":
            print("tenure bench: --soak applies to the segmenter benchmark only", file=sys.stderr)
            return 2
        if args.seconds is not None:
            if args.target != "idle":
                print("tenure bench: --seconds applies to the idle benchmark only", file=sys.stderr)
                return 2
            extra["seconds"] = args.seconds
        for option, value in (("steps", args.steps), ("step_seconds", args.step_seconds)):
            if value is not None:
                if args.target != "e2e":
                    flag = "--" + option.replace("_", "-")
                    print(f"tenure bench: {flag} applies to e2e only", file=sys.stderr)
                    return 2
                extra[option] = value
        return run_bench(args.target, duration_s=args.duration, quick=args.quick, **extra)
    return 2


if __name__ == "__main__":
    sys.exit(main())
