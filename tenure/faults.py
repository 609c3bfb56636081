"""``tenure faults``: kill one part of the embedded stack mid-stream, count what came out.

For each fault, a fresh stack as ``tenure dev`` runs it (:class:`~tenure.dev.DevStack`,
supervised by this process: dead services, PostgreSQL and the broker are restarted as
``tenure dev`` does), one journey "Order Completed → email", and ``customers`` new
customers each sent as one ``/v1/batch`` of an ``identify`` (with the email) and an
``Order Completed`` (:class:`~tenure.demo.client.Api`). Midway (the dispatcher ×3: at
a quarter, a half and three quarters) the part is killed with SIGKILL; a kill waits
(the stream paused) until the part runs, so each of the dispatcher's three kills hits
a dispatcher that was restarted and ready. After a broker
kill, every event is sent again, as the banner tells an operator to (same
``messageId``: what was applied is skipped). Then the run waits until every customer's
delivery is final and the SMTP sink and metrics agree (or stay apart, unchanged, for
``STABLE_S``), or ``settle_timeout_s``. The bounds a lost or interrupted message
waits for are shortened (:data:`SETTINGS`) so that a run settles in minutes.

The row per fault: customers, emails at the SMTP sink, customers emailed, customers
with more than one email (duplicates), metrics' ``sent`` count, the final outcomes
(dispatcher deliveries by status and reason), customers without a final outcome, and
how long after the last event the run settled. docs/reliability.md holds a measured
table and how to rerun it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tenure.bench.scratch import asyncpg_dsn
from tenure.demo.client import Api, ApiError, Endpoints
from tenure.demo.mail import read_maildir
from tenure.demo.population import daytime_zones
from tenure.dev import DevOptions, DevStack
from tenure.embedded import free_port, free_port_block
from tenure.services import SERVICES

#: fault -> (the part killed, at which fractions of the stream)
FAULTS: dict[str, tuple[str | None, tuple[float, ...]]] = {
    "none": (None, ()),
    "ingest": ("ingest", (0.5,)),
    "segmenter": ("segmenter", (0.5,)),
    "journey": ("journey", (0.5,)),
    "dispatcher": ("dispatcher", (0.5,)),
    "dispatcher x3": ("dispatcher", (0.25, 0.5, 0.75)),
    "metrics": ("metrics", (0.5,)),
    "postgres": ("postgres", (0.5,)),
    "broker": ("broker", (0.5,)),
}
JOURNEY, TEMPLATE = "faults-order-email", "faults-order-email"
#: the bounds a lost message waits for, shortened so that a run settles in minutes
SETTINGS = {
    "TENURE_JOURNEY_OUTCOME_WAIT_S": "30",
    "TENURE_DISPATCHER_PROFILE_WAIT_S": "60",
    "TENURE_DISPATCHER_SENDING_LEASE_S": "30",
    "TENURE_LOG_LEVEL": "WARNING",
}
FINAL = ("sent", "suppressed", "failed")
#: a run whose figures disagree is settled once they stayed the same this long
STABLE_S = 15.0


@dataclass
class FaultOptions:
    customers: int = 100
    faults: tuple[str, ...] = tuple(FAULTS)
    #: customers sent per second
    rate_per_s: float = 20.0
    settle_timeout_s: float = 300.0
    log: Callable[[str], None] = lambda line: print(f"tenure faults: {line}", file=sys.stderr)


@dataclass
class FaultResult:
    fault: str
    customers: int
    emails: int = 0
    emailed: int = 0
    duplicates: int = 0
    metrics_sent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    unaccounted: int = 0
    settled_s: float | None = None

    def row(self) -> str:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())) or "none"
        settled = f"{self.settled_s:.0f} s" if self.settled_s is not None else "no (timed out)"
        return (
            f"| {self.fault} | {self.customers} | {self.emails} | {self.emailed} | "
            f"{self.duplicates} | {self.metrics_sent} | {outcomes} | {self.unaccounted} | "
            f"{settled} |"
        )


HEADER = (
    "| fault | customers | emails at the sink | customers emailed | duplicates | "
    "metrics sent | final outcomes | no final outcome | settled after the last event |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


class Supervisor:
    """Runs :meth:`DevStack.supervise_once` in a thread, as ``tenure dev``'s loop does."""

    def __init__(self, stack: DevStack) -> None:
        self._stack = stack
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            self._stack.supervise_once()


class FaultRun:
    """One fault on a fresh stack: see the module docstring."""

    def __init__(self, fault: str, options: FaultOptions) -> None:
        self.fault = fault
        self.options = options
        self.prefix = "f" + fault.replace(" ", "")
        self.state = Path(tempfile.mkdtemp(prefix="tenure-faults-"))
        base = free_port_block(len(SERVICES) + 1)
        self.stack = DevStack(
            DevOptions(kafka_port=free_port(), base_port=base, state_dir=self.state)
        )
        # its own embedded servers, whatever the environment names: they are what is killed
        for name in ("DATABASE_URL", "TENURE_DATABASE_URL", "TENURE_KAFKA_BOOTSTRAP_SERVERS"):
            self.stack.env.pop(name, None)
        for name, value in SETTINGS.items():
            self.stack.env.setdefault(name, value)
        self.endpoints = Endpoints.from_base_port(base)

    def run(self) -> FaultResult:
        log = self.options.log
        try:
            log(f"{self.fault}: starting a stack in {self.state}")
            self.stack.start()
            with Supervisor(self.stack):
                api = Api(self.endpoints, self.stack.write_key, self.stack.admin_token)
                try:
                    self._set_up(api)
                    self._stream(api)
                    return self._settle()
                finally:
                    api.close()
        finally:
            self.stack.stop()
            shutil.rmtree(self.state, ignore_errors=True)

    # --- the stream -------------------------------------------------------------------

    def _set_up(self, api: Api) -> None:
        api.create_template(
            TEMPLATE,
            {
                "name": "Order confirmation",
                "variants": [
                    {
                        "channel": "email",
                        "subject": "Thanks for your order",
                        "html": '<p>Thanks.</p><p><a href="{{ unsubscribe_url }}">'
                        "Unsubscribe</a></p>",
                    }
                ],
            },
        )
        send = {"type": "send", "channels": ["email"], "template_id": TEMPLATE, "next": "done"}
        steps = [{"id": "email", **send}, {"id": "done", "type": "exit"}]
        api.create_journey(
            JOURNEY,
            "Order Completed → email",
            {
                "triggers": [{"kind": "event", "event": "Order Completed"}],
                "entry": {"mode": "once"},
                "steps": steps,
            },
        )
        api.publish_journey(JOURNEY)

    def _calls(self, index: int, zone: str) -> list[dict[str, Any]]:
        customer = f"{self.prefix}-{index:05d}"
        return [
            {
                "type": "identify",
                "messageId": f"{customer}-identify",
                "userId": customer,
                "traits": {"email": f"{customer}@faults.example", "timezone": zone},
            },
            {
                "type": "track",
                "messageId": f"{customer}-order",
                "userId": customer,
                "event": "Order Completed",
                "properties": {"revenue": 10},
            },
        ]

    def _stream(self, api: Api) -> None:
        part, at = FAULTS[self.fault]
        total = self.options.customers
        kills = sorted({max(1, int(total * fraction)) for fraction in at})
        zones = daytime_zones(datetime.now(UTC))
        pause = 1 / self.options.rate_per_s
        for index in range(total):
            if kills and index == kills[0]:
                kills.pop(0)
                assert part is not None
                self._kill(part)
            self._send(api, self._calls(index, zones[index % len(zones)]))
            time.sleep(pause)
        self.last_event = time.monotonic()
        if part == "broker":
            # as the banner says: resend every event sent since the broker started
            self.options.log(f"{self.fault}: sending every event again")
            for index in range(total):
                self._send(api, self._calls(index, zones[index % len(zones)]))
            self.last_event = time.monotonic()

    def _send(self, api: Api, calls: list[dict[str, Any]]) -> None:
        """One batch, retried while ingest is away or answers 503."""
        deadline = time.monotonic() + 180
        while True:
            try:
                api.batch(calls)
                return
            except (ApiError, httpx.TransportError) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ingest did not take a batch for 180 s: {exc}") from exc
                time.sleep(0.2)

    def _kill(self, part: str) -> None:
        """SIGKILL ``part``, once it runs (and, a service, answers ready): a second kill
        of the dispatcher waits for the one restarted after the first."""
        deadline = time.monotonic() + 180
        while (pid := self._running_pid(part)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {part} did not come back within 180 s")
            time.sleep(0.2)
        self.options.log(f"{self.fault}: SIGKILL to the {part} (pid {pid})")
        os.kill(pid, signal.SIGKILL)

    def _running_pid(self, part: str) -> int | None:
        if part == "postgres":
            postmaster = self.stack.servers.postmaster
            return postmaster.pid if postmaster is not None and postmaster.alive() else None
        if part == "broker":
            broker = self.stack.broker.process if self.stack.broker is not None else None
            return broker.pid if broker is not None and broker.poll() is None else None
        process = self.stack.processes[part]
        if process.poll() is not None:
            return None
        try:
            ready = httpx.get(f"{getattr(self.endpoints, part)}/readyz", timeout=2)
        except httpx.TransportError:
            return None
        return process.pid if ready.status_code == 200 else None

    # --- counting -----------------------------------------------------------------------

    def _settle(self) -> FaultResult:
        """Count until every customer has a final outcome and the sink, the deliveries
        and metrics agree, or (a disagreement that stays) nothing changed for
        ``STABLE_S``; or until the timeout."""
        deadline = time.monotonic() + self.options.settle_timeout_s
        seen: tuple[Any, ...] = ()
        changed = time.monotonic()
        while True:
            result = self._count()
            now = time.monotonic()
            figures = (result.emails, result.metrics_sent, sorted(result.outcomes.items()))
            if figures != seen:
                seen, changed = figures, now
            agree = result.emails == result.outcomes.get("sent", 0) == result.metrics_sent
            if result.unaccounted == 0 and (agree or now - changed >= STABLE_S):
                result.settled_s = changed - self.last_event
                return result
            if now > deadline:
                return result
            time.sleep(1.0)

    def _count(self) -> FaultResult:
        result = FaultResult(self.fault, self.options.customers)
        providers = self.stack.providers
        emails = read_maildir(providers.maildir) if providers is not None else []
        per_customer = Counter(e.to for e in emails if e.to.endswith("@faults.example"))
        result.emails = sum(per_customer.values())
        result.emailed = len(per_customer)
        result.duplicates = sum(1 for count in per_customer.values() if count > 1)
        try:
            outcomes, final, sent = asyncio.run(self._query())
        except (OSError, asyncpg.PostgresError):
            result.unaccounted = result.customers  # the database is away: not settled
            return result
        result.outcomes = outcomes
        result.unaccounted = result.customers - final
        result.metrics_sent = sent
        return result

    async def _query(self) -> tuple[Counter[str], int, int]:
        conn = await asyncpg.connect(asyncpg_dsn(self.stack.env["TENURE_DATABASE_URL"]))
        try:
            rows = await conn.fetch(
                "SELECT status, coalesce(reason, '') AS reason, count(*) AS n "
                "FROM dispatcher.deliveries WHERE customer_id LIKE $1 GROUP BY 1, 2",
                f"{self.prefix}-%",
            )
            final = await conn.fetchval(
                "SELECT count(DISTINCT customer_id) FROM dispatcher.deliveries "
                "WHERE customer_id LIKE $1 AND status = ANY($2::text[])",
                f"{self.prefix}-%",
                list(FINAL),
            )
            sent = await conn.fetchval(
                "SELECT coalesce(sum(count), 0) FROM metrics.funnel_daily "
                "WHERE journey_id = $1 AND metric = 'sent'",
                JOURNEY,
            )
        finally:
            await conn.close()
        outcomes: Counter[str] = Counter()
        for row in rows:
            label = row["status"] + (f" ({row['reason']})" if row["reason"] else "")
            outcomes[label] += int(row["n"])
        return outcomes, int(final or 0), int(sent or 0)


def run_faults(options: FaultOptions) -> list[FaultResult]:
    """Each fault in turn on a stack of its own; the table printed as it fills."""
    results = []
    print(HEADER, flush=True)
    for fault in options.faults:
        result = FaultRun(fault, options).run()
        results.append(result)
        print(result.row(), flush=True)
    return results
