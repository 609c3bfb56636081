"""``tenure demo``: a shop's retention programme on the running stack, and a population
of customers living through it.

Phases: set up (segments, loyalty program, products, coupon pool, templates, journeys)
→ history (months of sign-ups, browsing and orders, backfilled by timestamp through
``/v1/import``) → settle (wait until the segmenter has folded it; refit scores,
recompute recommendations and loyalty) → publish the journeys → today (sign-ups,
carts, first orders, tier-ups) → the lapsed segment (its backfill starts the
win-backs) → engage (read the Maildir as customers do: open, click, answer the NPS
question, buy) → summary.

Idempotent: ids and ``messageId``s are derived from the seed, creating what exists is
done, and what a run did is kept in ``<state>/demo/`` so that a second run sends
nothing twice (emails already read are not read again).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tenure.demo import catalog
from tenure.demo.client import Api, ApiError, Endpoints
from tenure.demo.mail import Email, read_maildir
from tenure.demo.population import Customer, Population, daytime_zones

BATCH = 400


@dataclass
class DemoOptions:
    state_dir: Path
    customers: int = 3000
    seed: int = 7
    engage_s: float = 150.0
    settle_timeout_s: float = 300.0
    endpoints: Endpoints | None = None
    base_port: int | None = None
    write_key: str | None = None
    admin_token: str | None = None
    maildir: Path | None = None
    quiet: bool = False


@dataclass
class DemoResult:
    created: Counter[str] = field(default_factory=Counter)
    calls_sent: int = 0
    emails_read: int = 0
    opens: int = 0
    clicks: int = 0
    nps_answers: int = 0
    orders_after_email: int = 0
    summary: dict[str, Any] = field(default_factory=dict)


class DemoState:
    """What earlier runs with this seed and size did (``<state>/demo/<prefix>.json``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"phases": [], "read": []}
        if path.exists():
            self.data = json.loads(path.read_text())
        self.read: set[str] = set(self.data["read"])

    def done(self, phase: str) -> bool:
        return phase in self.data["phases"]

    def mark(self, phase: str) -> None:
        self.data["phases"].append(phase)
        self.save()

    def save(self) -> None:
        self.data["read"] = sorted(self.read)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data))


def _secret(state_dir: Path, name: str) -> str:
    path = state_dir / name
    if not path.exists():
        raise ApiError(f"no {path}: start the stack with `tenure dev` (or pass --{name})")
    return path.read_text().strip()


class Demo:
    def __init__(self, options: DemoOptions) -> None:
        self.o = options
        self.console = Console(quiet=options.quiet, highlight=False)
        endpoints = options.endpoints or Endpoints.from_base_port(options.base_port)
        self.api = Api(
            endpoints,
            options.write_key or _secret(options.state_dir, "write-key"),
            options.admin_token or _secret(options.state_dir, "admin-token"),
        )
        self.maildir = options.maildir or options.state_dir / "mail" / "Maildir"
        self.population = Population(options.customers, options.seed, datetime.now(UTC))
        self.state = DemoState(
            options.state_dir / "demo" / f"{self.population.prefix}-{options.customers}.json"
        )
        self.result = DemoResult()
        #: (what the journey service had consumed before the history, the history's size)
        self._journey_wait: tuple[float, int] | None = None

    # --- progress -------------------------------------------------------------------------

    @contextmanager
    def _bar(self, title: str, total: float | None) -> Iterator[Callable[[float], None]]:
        progress = Progress(
            TextColumn(f"[bold]{title:<34}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        with progress:
            task = progress.add_task(title, total=total)
            yield lambda n: progress.advance(task, n)

    # --- phases ---------------------------------------------------------------------------

    def run(self) -> DemoResult:
        ready = self.api.ready()
        down = [name for name, ok in ready.items() if not ok]
        if down:
            raise ApiError(
                f"not ready: {', '.join(down)}. Start the stack first (`make run` or "
                "`tenure dev`), or point the demo at it (--base-port, --*-url)."
            )
        self.console.print(
            f"[bold]tenure demo[/]: {self.o.customers} customers (seed {self.o.seed}) "
            f"at {catalog.SHOP}"
        )
        self.setup()
        made = ", ".join(f"{n} {kind}" for kind, n in sorted(self.result.created.items()) if n)
        self.console.print(f"created: {made or 'nothing new (it was all there)'}")
        self.history()
        self.settle()
        self.publish()
        self.today()
        self.lapsed()
        self.engage()
        self.summarise()
        self.api.close()
        return self.result

    def setup(self) -> None:
        c, api = catalog, self.api
        products = list(c.PRODUCTS.items())
        total = 3 + len(products) + len(c.SEGMENTS) + len(c.TEMPLATES) + len(c.JOURNEYS)
        with self._bar("set up the shop's programme", total) as advance:

            def did(kind: str, created: bool) -> None:
                self.result.created[kind] += int(created)
                advance(1)

            api.put_loyalty_program(c.LOYALTY_PROGRAM)
            advance(1)
            for pid, (name, category, _) in products:
                body = {"name": name, "category": category, "consumable": pid in c.CONSUMABLE}
                api.put_product(pid, body)
                advance(1)
            for sid, name, rule in c.SEGMENTS:
                did("segment", api.create_segment(sid, name, rule))
            did("coupon pool", api.create_coupon_pool(c.WINBACK_POOL, "Win-back 15 %", 50))
            codes = c.coupon_codes(max(200, self.o.customers))
            did("coupon codes", api.add_coupon_codes(c.WINBACK_POOL, codes) > 0)
            for tid, definition in c.TEMPLATES.items():
                did("template", api.create_template(tid, definition))
            for jid, (name, definition) in c.JOURNEYS.items():
                did("journey", api.create_journey(jid, name, definition))

    def _send(
        self, title: str, calls_of: Callable[[Customer], list[dict[str, Any]]], *, historical: bool
    ) -> None:
        customers = self.population.customers
        with self._bar(title, len(customers)) as advance:
            pending: list[dict[str, Any]] = []
            count = 0
            for customer in customers:
                pending += calls_of(customer)
                count += 1
                if len(pending) >= BATCH:
                    self.result.calls_sent += self.api.batch(pending, historical=historical)
                    pending = []
                    advance(count)
                    count = 0
            if pending:
                self.result.calls_sent += self.api.batch(pending, historical=historical)
            advance(count)

    def history(self) -> None:
        if self.state.done("history"):
            self.console.print("history: sent by an earlier run")
            return
        baseline = self.api.consumed("journey")
        sent_before = self.result.calls_sent
        zones = daytime_zones(datetime.now(UTC))
        self._send(
            "backfill a year of history",
            lambda c: self.population.history(c, zones),
            historical=True,
        )
        #: the journey service must have read the history before the journeys go live, or
        #: last year's sign-ups and orders would start this year's journeys
        self._journey_wait = (baseline, self.result.calls_sent - sent_before)
        self.state.mark("history")

    def settle(self) -> None:
        """Wait until the segmenter has folded the history (a sample of customers' order
        counts), then refit scores, recompute recommendations and loyalty."""
        rng = random.Random(self.o.seed)
        with_history = [c for c in self.population.customers if c.storyline != "signup"]
        sample = rng.sample(with_history, min(12, len(with_history)))
        expected = {
            c.id: sum(
                1
                for call in self.population.history(c, ["UTC"])
                if call.get("event") == "Order Completed"
            )
            for c in sample
        }
        deadline = time.monotonic() + self.o.settle_timeout_s
        with self._bar("wait for the segmenter", len(sample)) as advance:
            pending = set(expected)
            while pending:
                for cid in sorted(pending):
                    profile = self.api.profile(cid)
                    if profile is None:
                        continue
                    orders = sum(
                        e["count"]
                        for e in profile.get("events", [])
                        if e["event"] == "Order Completed"
                    )
                    if orders >= expected[cid]:
                        pending.discard(cid)
                        advance(1)
                if pending and time.monotonic() > deadline:
                    raise ApiError(f"the segmenter has not folded the history of {sorted(pending)}")
                if pending:
                    time.sleep(1)
        if self._journey_wait is not None:
            self._wait_consumed("journey", *self._journey_wait)
        if self.state.done("models"):
            return
        jobs = [
            ("refit churn and LTV scores", self.api.refit_scores),
            ("recompute recommendations", self.api.recompute_recommendations),
            ("refresh loyalty tiers", self.api.refresh_loyalty),
        ]
        with self._bar("scores, recommendations, loyalty", len(jobs)) as advance:
            for _, job in jobs:
                job()
                advance(1)
        self.state.mark("models")

    def _wait_consumed(self, service: str, baseline: float, size: int) -> None:
        """Wait until ``service`` has consumed ``size`` more customer events than
        ``baseline`` (at most the settle timeout)."""
        deadline = time.monotonic() + self.o.settle_timeout_s
        with self._bar(f"wait for the {service} service", size) as advance:
            seen = 0.0
            while True:
                read = min(self.api.consumed(service) - baseline, size)
                advance(max(0.0, read - seen))
                seen = max(seen, read)
                if read >= size:
                    return
                if time.monotonic() > deadline:
                    self.console.print(
                        f"the {service} service has not read every event yet; going on"
                    )
                    return
                time.sleep(1)

    def publish(self) -> None:
        sid, name, _ = catalog.LAPSED_SEGMENT
        if self.api.create_segment(sid, name, catalog.NOBODY_YET):
            self.result.created["segment"] += 1
        with self._bar("publish the five journeys", len(catalog.JOURNEYS)) as advance:
            for jid in catalog.JOURNEYS:
                if self.api.publish_journey(jid):
                    self.result.created["published"] += 1
                advance(1)

    def today(self) -> None:
        if self.state.done("today"):
            self.console.print("today: sent by an earlier run")
            return
        zones = daytime_zones(datetime.now(UTC))
        baseline, sent_before = self.api.consumed("segmenter"), self.result.calls_sent
        self._send(
            "today: sign-ups, carts, orders",
            lambda c: self.population.today(c, zones),
            historical=False,
        )
        #: the lapsed segment comes next: today's events must count in it
        self._wait_consumed("segmenter", baseline, self.result.calls_sent - sent_before)
        self.state.mark("today")

    def lapsed(self) -> None:
        """The lapsed segment's real rule, now that the win-back journey is live: the
        new version's members enter it (a second run saves the same members again:
        nobody enters twice)."""
        sid, _, rule = catalog.LAPSED_SEGMENT
        self.api.update_segment(sid, rule)

    def engage(self) -> None:
        """Read the Maildir as the customers do, for ``engage_s`` seconds."""
        people = self.population.by_email()
        deadline = time.monotonic() + self.o.engage_s
        with self._bar(f"customers read their email ({self.o.engage_s:.0f} s)", None) as advance:
            while True:
                fresh = [
                    e
                    for e in read_maildir(self.maildir)
                    if e.dispatch_id not in self.state.read and e.to in people
                ]
                for email in fresh:
                    self._react(people[email.to], email)
                    self.state.read.add(email.dispatch_id)
                    advance(1)
                if fresh:
                    self.state.save()
                if time.monotonic() >= deadline:
                    break
                time.sleep(2)

    def _react(self, customer: Customer, email: Email) -> None:
        self.result.emails_read += 1
        template = template_of(email.subject)
        if template is None:
            return
        reaction = self.population.reaction(customer, template, email.dispatch_id)
        if reaction["opened"] and email.opens:
            self.api.track_link(email.opens[0])
            self.result.opens += 1
        if reaction["clicked"] and email.clicks:
            self.api.track_link(email.clicks[0])
            self.result.clicks += 1
        if reaction["nps"] is not None and reaction["nps"] in email.surveys:
            self.api.answer_survey(email.surveys[reaction["nps"]])
            self.result.nps_answers += 1
        if reaction["bought"]:
            order = self.population.conversion(customer, email.dispatch_id, template, email.coupon)
            self.api.batch([order])
            self.result.orders_after_email += 1

    # --- summary --------------------------------------------------------------------------

    def summarise(self) -> None:
        api, summary = self.api, self.result.summary
        with suppress(ApiError):
            api.evaluate_experiments()
        funnel = _rows(api.kpi("funnel", group_by="journey_id"))
        rows = {
            r.get("journey_id"): r
            for r in funnel
            if str(r.get("journey_id", "")).startswith("demo-")
        }
        summary["funnel"] = rows
        summary["maildir"] = len(read_maildir(self.maildir))
        activity = _rows(api.kpi("activity", period="month"))
        summary["churn_rate"] = next(
            (r["churn_rate"] for r in reversed(activity[:-1]) if r.get("churn_rate") is not None),
            None,
        )
        experiments = api.experiments("demo-post-purchase")
        summary["experiments"] = experiments
        table = Table(
            title="What happened (emails per journey, last 30 days)",
            padding=(0, 1),
            pad_edge=False,
            title_justify="left",
            box=box.SIMPLE_HEAD,
        )
        columns = ("journey", "req.", "deferred", "suppr.", "accepted", "opened", "clicked")
        for column in (*columns, "conv."):
            if column == "journey":
                table.add_column(column, no_wrap=True, min_width=14)
            else:
                table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
        for jid in catalog.JOURNEYS:
            r = rows.get(jid, {})
            table.add_row(
                jid.removeprefix("demo-"),
                *(
                    str(r.get(k, 0))
                    for k in (
                        "requested",
                        "deferred",
                        "suppressed",
                        "sent",
                        "opened",
                        "clicked",
                        "converted",
                    )
                ),
            )
        self.console.print(table)
        self.console.print("req. = requested by the journey; accepted = taken by the SMTP server")
        res = self.result
        self.console.print(
            f"emails in the Maildir: {summary['maildir']} · read by customers this run: "
            f"{res.emails_read} (opened {res.opens}, clicked {res.clicks}, NPS answers "
            f"{res.nps_answers}, orders after an email {res.orders_after_email})"
        )
        churn = summary["churn_rate"]
        self.console.print(
            "monthly churn (last complete month): "
            + ("–" if churn is None else f"{100 * churn:.1f} %")
        )
        for e in experiments:
            arms = (e.get("result") or {}).get("arms") or []
            numbers = ", ".join(
                f"{a['variant']}: {a['converted']}/{a['exposed']} "
                f"({100 * (a.get('rate') or 0):.1f} %)"
                for a in arms
            )
            verdict = (e.get("verdict") or "not evaluated").replace("_", " ")
            winner = f" → {e['winner']}" if e.get("winner") else ""
            self.console.print(
                f"A/B {e['journey_id']} · {e['step_id']}: {verdict}{winner}  ({numbers})",
                markup=False,
            )
        if not experiments:
            self.console.print("A/B: no exposures measured yet (metrics evaluates every minute)")
        self._where_to_look()

    def _where_to_look(self) -> None:
        u, state = self.api.urls, self.o.state_dir
        auth = 'curl -H "Authorization: Bearer $(cat ' + str(state / "admin-token") + ')"'
        lines = [
            "",
            "[bold]Where to look[/]",
            f"  mail        {self.maildir}   (mutt -f {self.maildir})",
            f"  report      {u.metrics}/report#token=<the admin token>",
            f"  funnel      {auth} '{u.metrics}/v1/kpis/funnel?group_by=journey_id'",
            f"  A/B         {auth} '{u.metrics}/v1/experiments?journey_id=demo-post-purchase'",
            f"  cohorts     {auth} '{u.metrics}/v1/kpis/cohorts?period=month'",
            f"  churn       {auth} '{u.metrics}/v1/kpis/activity?period=month'",
            f"  a customer  {auth} {u.segmenter}/v1/profiles/{self.population.customers[0].id}",
            f"  a journey   {auth} '{u.journey}/v1/journeys/demo-post-purchase/diagram'",
            "  Prometheus  the prometheus line of the `tenure dev` banner "
            "(tenure_dispatcher_*, tenure_metrics_*)",
        ]
        for line in lines:
            self.console.print(line, markup=line.startswith("[bold]"), soft_wrap=True)


def _rows(answer: Any) -> list[dict[str, Any]]:
    """A KPI answer's rows (a list, or an object with ``rows`` or ``periods``)."""
    if isinstance(answer, dict):
        found: list[dict[str, Any]] = answer.get("rows") or answer.get("periods") or []
        return found
    return list(answer)


def template_of(subject: str) -> str | None:
    """The demo template an email's subject comes from, or None."""
    for marker, _journey, template in catalog.SUBJECT_MARKERS:
        if marker in subject:
            return template
    return None


def run_demo(options: DemoOptions) -> int:
    try:
        Demo(options).run()
    except ApiError as exc:
        Console(stderr=True).print(f"tenure demo: {exc}", highlight=False, markup=False)
        return 1
    return 0


def journeys_of(emails: Sequence[Email]) -> Counter[str]:
    """Emails per demo journey, from their subjects."""
    out: Counter[str] = Counter()
    for email in emails:
        for marker, journey, _ in catalog.SUBJECT_MARKERS:
            if marker in email.subject:
                out[journey] += 1
                break
    return out
