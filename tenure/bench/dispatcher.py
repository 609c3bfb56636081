"""``tenure bench dispatcher``: emails and pushes per second through every check, beside
the raw client sends to the very same servers in the same run.

Everything runs on this machine: the embedded broker and PostgreSQL, a dispatcher
process (``tenure serve dispatcher``), and the providers in a process of their own
(``python -m tenure.sinks``: an aiosmtpd SMTP server; ``python -m tenure.responder``: a
raw asyncio HTTP/1.1 endpoint answering as FCM does, fast enough not to bound the push
figures). Each customer gets one message, so the caps are checked but do not bite;
quiet hours are on, with customers in a timezone where it is daytime.

Scenarios:

- **email throughput** — ``count`` requests published at once; from the first publish
  to the last ``sent`` outcome. Baseline: raw aiosmtplib sends of the same messages
  size over as many reused connections to the same SMTP server.
- **push throughput** — the same with FCM tokens. Baseline: raw httpx posts of
  FCM-sized payloads to the same endpoint at the same concurrency.
- **email latency at half rate** — requests published steadily at half the measured
  email throughput (``TENURE_BENCH_LATENCY_RATE``: a fixed rate instead); p99 of
  ``outcome.at − requestedAt`` (request to handoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from shared.auth import hash_token
from shared.db.migrations import upgrade
from shared.events import ALL_TOPICS, dispatch_outcomes, dispatch_requests, profiles
from shared.events.dispatch_requests import DispatchRequest
from shared.events.profiles import ProfileUpdate
from shared.kafka.producer import EventPublisher, Message
from shared.kafka.topics import ensure_topics, with_dead_letters
from shared.settings import KafkaSettings
from tenure.bench.cpu import tree_cpu
from tenure.bench.report import Figure, format_figures
from tenure.bench.topic_reader import TopicReader
from tenure.embedded import EmbeddedBroker, EmbeddedPostgres, free_port, wait_for_port
from tenure.services import SERVICES

ADMIN = "bench-admin-token"
EMAILS_PER_S_TARGET = 500.0
PUSH_PER_S_TARGET = 2_000.0
P99_TARGET_MS = 500.0
#: connections to the HTTP endpoint, the dispatcher's and the baseline's (kept from when
#: the uvicorn recorder answered fewer requests per second with more of them)
HTTP_CONNECTIONS = 4


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _daytime_zone(now: datetime) -> str:
    """An ``Etc/GMT±N`` zone where it is about 13:00 now (quiet hours stay on)."""
    offset = (13 - now.hour + 12) % 24 - 12  # hours ahead of UTC
    return "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


class DispatcherBench:
    def __init__(self, *, count: int, state: Path, concurrency: int = 64) -> None:
        self.count = count
        self.state = state
        self.concurrency = concurrency
        self.processes: list[subprocess.Popen[bytes]] = []
        #: the dispatcher's CPU µs per message of the last throughput scenario (its
        #: process tree: the workers included)
        self.cpu_us: float | None = None

    async def run(self) -> list[Figure]:
        broker = EmbeddedBroker(free_port(), self.state / "broker.log")
        postgres = EmbeddedPostgres(self.state / "postgres", database="bench")
        broker.start()
        try:
            url = await asyncio.to_thread(postgres.start)
            try:
                return await self._run(broker, url)
            finally:
                self._stop_processes()
                postgres.stop()
        finally:
            broker.stop()

    async def _run(self, broker: EmbeddedBroker, url: str) -> list[Figure]:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, partitions=6)
        await ensure_topics(kafka, with_dead_letters(ALL_TOPICS))
        await asyncio.to_thread(
            upgrade, script_location=SERVICES["dispatcher"].migrations_dir, database_url=url
        )
        smtp_port, http_port, port = free_port(), free_port(), free_port()
        self._spawn(
            [
                sys.executable,
                "-m",
                "tenure.sinks",
                "--smtp-port",
                str(smtp_port),
            ],
            {},
            "sinks",
        )
        # FCM's stand-in: a raw asyncio responder in processes of its own (the uvicorn
        # recorder sharing the SMTP sink's process bounded the push figures)
        self._spawn(
            [
                sys.executable,
                "-m",
                "tenure.responder",
                "--port",
                str(http_port),
                "--workers",
                os.environ.get("TENURE_BENCH_RESPONDER_WORKERS", "1"),
            ],
            {},
            "responder",
        )
        wait_for_port(smtp_port)
        wait_for_port(http_port)
        account = _service_account(f"http://127.0.0.1:{http_port}/token")
        profile = os.environ.get("TENURE_BENCH_PROFILE")  # cProfile the dispatcher to a file
        self._spawn(
            [sys.executable, "-c", _profiled(profile)]
            if profile
            else [sys.executable, "-m", "tenure", "serve", "dispatcher"],
            {
                "TENURE_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                "TENURE_DATABASE_URL": url,
                "TENURE_HTTP_PORT": str(port),
                "TENURE_LOG_LEVEL": "WARNING",
                # one worker process per core, each a member of the consumer group
                "TENURE_HTTP_WORKERS": os.environ.get("TENURE_BENCH_DISPATCHER_WORKERS", "2"),
                "TENURE_DISPATCHER_LINK_SECRET": "bench-link-secret-0123456789",
                "TENURE_DISPATCHER_ADMIN_TOKEN_HASHES": hash_token(ADMIN),
                "TENURE_SMTP_PORT": str(smtp_port),
                "TENURE_SMTP_CONNECTIONS": str(self.concurrency),
                "TENURE_DISPATCHER_HTTP_CONNECTIONS": str(HTTP_CONNECTIONS),
                "TENURE_FCM_BASE_URL": f"http://127.0.0.1:{http_port}",
                "TENURE_FCM_ALLOW": "127.0.0.1",
                "TENURE_FCM_SERVICE_ACCOUNT_JSON": json.dumps(account),
            },
            "dispatcher",
        )
        await _ready(port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            answer = await client.post(
                "/v1/templates",
                headers={"Authorization": f"Bearer {ADMIN}"},
                json={"id": "bench", "definition": _TEMPLATE},
            )
            answer.raise_for_status()
        publisher = EventPublisher(kafka, client_id="bench")
        await publisher.start()
        outcomes = _OutcomeCounter(broker.bootstrap_servers)
        await outcomes.start()
        try:
            figures: list[Figure] = []
            # warm up: the consumer joins its group, connections open, the token is fetched
            for channel in ("email", "push"):
                await self._throughput(publisher, outcomes, url, channel, count=50)
            email_rate = await self._throughput(publisher, outcomes, url, "email")
            email_cpu = self.cpu_us
            raw_smtp = await _raw_smtp(smtp_port, self.count, self.concurrency)
            figures.append(
                Figure(
                    "email throughput",
                    email_rate,
                    "emails/s",
                    f"raw aiosmtplib {raw_smtp:,.0f}/s",
                    email_rate / raw_smtp,
                    f">= {EMAILS_PER_S_TARGET:g}/s",
                    email_rate >= EMAILS_PER_S_TARGET,
                    note=_cpu_note(email_cpu, "email"),
                )
            )
            push_rate = await self._throughput(publisher, outcomes, url, "push")
            raw_http = await _raw_http(http_port, self.count, HTTP_CONNECTIONS)
            figures.append(
                Figure(
                    "push throughput (FCM)",
                    push_rate,
                    "pushes/s",
                    f"raw httpx {raw_http:,.0f}/s",
                    push_rate / raw_http,
                    f">= {PUSH_PER_S_TARGET:g}/s",
                    push_rate >= PUSH_PER_S_TARGET,
                    note=_cpu_note(self.cpu_us, "push"),
                )
            )
            # a fixed rate compares two runs on a busy machine (half of a noisy figure
            # moves the load as much as the change under test does)
            fixed = os.environ.get("TENURE_BENCH_LATENCY_RATE")
            latency_rate = float(fixed) if fixed else email_rate / 2
            p99, detail = await self._latency(publisher, outcomes, url, rate=latency_rate)
            figures.append(
                Figure(
                    "email p99 at half rate",
                    p99,
                    "ms",
                    f"{latency_rate:,.0f} requests/s",
                    None,
                    f"< {P99_TARGET_MS:g} ms",
                    p99 < P99_TARGET_MS,
                    note="request published → provider accepted (outcome.at − requestedAt); "
                    + detail,
                )
            )
            return figures
        finally:
            await outcomes.stop()
            await publisher.stop()

    async def _customers(
        self, publisher: EventPublisher, url: str, channel: str, count: int
    ) -> list[str]:
        run = uuid.uuid4().hex[:6]
        ids = [f"{channel}-{run}-{i}" for i in range(count)]
        zone = _daytime_zone(datetime.now(UTC))
        now = datetime.now(UTC)
        for start in range(0, count, 2_000):
            await publisher.publish_many(
                Message(
                    profiles.TOPIC,
                    c.encode(),
                    ProfileUpdate(
                        customer_id=c,
                        version=1,
                        email=f"{c}@example.com",
                        timezone=zone,
                        traits={"first_name": "Ada", "fcmToken": f"token-{c}"},
                        updated_at=now,
                    ).to_bytes(),
                )
                for c in ids[start : start + 2_000]
            )
        await _projected(url, f"{channel}-{run}-", count)
        return ids

    async def _throughput(
        self,
        publisher: EventPublisher,
        outcomes: _OutcomeCounter,
        url: str,
        channel: str,
        count: int | None = None,
    ) -> float:
        ids = await self._customers(publisher, url, channel, count or self.count)
        requests = [_request(c, channel) for c in ids]
        _say(f"dispatcher bench: {len(requests):,} {channel} requests")
        dispatcher = {"dispatcher": [self.processes[-1].pid]}  # spawned last
        cpu_before = tree_cpu(dispatcher)["dispatcher"]
        started = time.perf_counter()
        for start in range(0, len(requests), 2_000):
            await publisher.publish_many(
                Message(dispatch_requests.TOPIC, r.key, r.to_bytes())
                for r in requests[start : start + 2_000]
            )
        await outcomes.wait_for({r.dispatch_id for r in requests}, timeout_s=600)
        elapsed = time.perf_counter() - started
        cpu = tree_cpu(dispatcher)["dispatcher"] - cpu_before
        self.cpu_us = cpu / len(requests) * 1e6
        return len(requests) / elapsed

    async def _latency(
        self, publisher: EventPublisher, outcomes: _OutcomeCounter, url: str, *, rate: float
    ) -> tuple[float, str]:
        """p99 in ms, and its detail: p50, and p99 past the first second (the wake-up
        of a consumer that was idle)."""
        count = max(200, min(self.count, int(rate * 10)))
        ids = await self._customers(publisher, url, "latency", count)
        _say(f"dispatcher bench: {count:,} email requests at {rate:,.0f}/s")
        wanted: dict[str, datetime] = {}
        order: list[str] = []
        started = time.perf_counter()
        for index, customer in enumerate(ids):
            due = started + index / rate
            pause = due - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            request = _request(customer, "email")
            wanted[request.dispatch_id] = request.requested_at
            order.append(request.dispatch_id)
            await publisher.publish(
                Message(dispatch_requests.TOPIC, request.key, request.to_bytes())
            )
        await outcomes.wait_for(set(wanted), timeout_s=600)
        in_order = [(outcomes.sent_at[d] - wanted[d]).total_seconds() * 1000 for d in order]
        latencies = sorted(in_order)
        settled = sorted(in_order[int(rate) :]) or latencies
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        detail = (
            f"p50 {latencies[len(latencies) // 2]:,.0f} ms; past the first second "
            f"p99 {settled[int(len(settled) * 0.99) - 1]:,.0f} ms"
        )
        return p99, detail

    def _spawn(self, argv: list[str], env: dict[str, str], name: str) -> None:
        log = (self.state / f"{name}.log").open("ab")
        with log:
            self.processes.append(
                subprocess.Popen(argv, env={**os.environ, **env}, stdout=log, stderr=log)
            )

    def _stop_processes(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()


_TEMPLATE = {
    "name": "bench",
    "variants": [
        {
            "channel": "email",
            "subject": "{{ customer.traits.first_name }}, your cart is waiting",
            "text": "Hi {{ customer.traits.first_name }}, {{ context.item }} is still there.",
            "html": "<html><body><p>Hi {{ customer.traits.first_name }}</p>"
            '<a href="https://shop.example/cart">Back to your cart</a></body></html>',
        },
        {"channel": "push", "title": "Hi {{ customer.traits.first_name }}", "text": "Come back"},
    ],
}


def _profiled(path: str) -> str:
    """``tenure serve dispatcher`` under cProfile, its stats written to ``path`` on
    SIGTERM (uvicorn re-raises the signal once shut down: a handler of ours, not the
    default one that would kill the process before cProfile writes)."""
    return (
        "import cProfile, signal, sys\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "from tenure.cli import main\n"
        f'cProfile.run(\'main(["serve", "dispatcher"])\', {path!r})\n'
    )


def _cpu_note(cpu_us: float | None, what: str) -> str:
    if cpu_us is None:
        return ""
    return f"the dispatcher's CPU {cpu_us:,.0f} µs per {what} (its processes, all of them)"


def _request(customer: str, channel: str) -> DispatchRequest:
    return DispatchRequest(
        dispatch_id=str(uuid.uuid4()),
        customer_id=customer,
        channels=[channel],
        template_id="bench",
        context={"item": "Trail shoes"},
        journey_id="bench",
        step_id="send",
        requested_at=datetime.now(UTC),
    )


class _OutcomeCounter(TopicReader):
    """Reads dispatch.outcomes (every partition, no group) and keeps final ones."""

    def __init__(self, bootstrap_servers: str) -> None:
        super().__init__(
            AIOKafkaConsumer(
                dispatch_outcomes.TOPIC,
                bootstrap_servers=bootstrap_servers,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                group_id=None,
            )
        )
        self.final: dict[str, str] = {}
        #: when each sent message was accepted by its provider (the outcome's ``at``)
        self.sent_at: dict[str, datetime] = {}

    def take(self, record: ConsumerRecord[bytes, bytes], arrived: float) -> None:
        value = orjson.loads(record.value)
        if value["status"] in ("sent", "failed", "suppressed"):
            self.final[value["dispatchId"]] = (
                f"{value['status']} {value.get('reason') or ''}".strip()
            )
            if value["status"] == "sent":
                self.sent_at[value["dispatchId"]] = datetime.fromisoformat(value["at"])

    async def wait_for(self, ids: set[str], *, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ids <= self.final.keys():
            if time.monotonic() > deadline:
                done = len(ids & self.final.keys())
                raise TimeoutError(f"{done:,} of {len(ids):,} requests got a final outcome")
            await asyncio.sleep(0.05)
        failed = [i for i in ids if self.final[i] != "sent"]
        if failed:
            raise RuntimeError(f"{len(failed):,} requests were not sent: {self.final[failed[0]]}")


async def _raw_smtp(port: int, count: int, connections: int) -> float:
    """The same number of messages, raw aiosmtplib, over ``connections`` reused sessions."""
    message = EmailMessage()
    message["From"] = "bench@tenure.local"
    message["To"] = "ada@example.com"
    message["Subject"] = "Ada, your cart is waiting"
    message.set_content("Hi Ada, Trail shoes is still there.")
    message.add_alternative("<html><body><p>Hi Ada</p></body></html>", subtype="html")
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        try:
            while not queue.empty():
                queue.get_nowait()
                await client.send_message(message)
        finally:
            with contextlib.suppress(Exception):
                await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return count / (time.perf_counter() - started)


async def _raw_http(port: int, count: int, concurrency: int) -> float:
    """FCM-shaped posts with raw httpx to the same endpoint at the same concurrency."""
    body = orjson.dumps(
        {
            "message": {
                "token": "token-x",
                "notification": {"title": "Hi Ada", "body": "Come back"},
                "data": {"dispatchId": str(uuid.uuid4())},
            }
        }
    )
    url = f"http://127.0.0.1:{port}/v1/projects/bench/messages:send"
    slots = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:

        async def post() -> None:
            async with slots:
                (await client.post(url, content=body)).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(post() for _ in range(count)))
        return count / (time.perf_counter() - started)


def _service_account(token_url: str) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "project_id": "bench",
        "private_key": pem,
        "client_email": "bench@bench.iam.gserviceaccount.com",
        "token_uri": token_url,
    }


async def _ready(port: int) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(900):
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise TimeoutError("the dispatcher was not ready in 90 s")


async def _projected(url: str, prefix: str, count: int) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        for _ in range(3_000):
            found = await conn.fetchval(
                "SELECT count(*) FROM dispatcher.profiles WHERE customer_id LIKE $1", prefix + "%"
            )
            if found >= count:
                return
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise TimeoutError("the profiles were not projected")


async def run_dispatcher_bench(*, duration_s: float, quick: bool) -> int:
    count = 1_000 if quick else max(5_000, int(duration_s * 1_000))
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="tenure-bench-dispatcher-") as state:
        try:
            figures = await DispatcherBench(count=count, state=Path(state)).run()
        except (RuntimeError, TimeoutError, OSError, asyncpg.PostgresError) as exc:
            print(f"tenure bench dispatcher: {exc!r}", file=sys.stderr)
            return 2
    print(
        f"tenure bench dispatcher: {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"{count:,} messages per scenario{' (quick)' if quick else ''}"
    )
    print(format_figures(figures))
    misses = [f for f in figures if f.passed is False]
    return 1 if misses and not quick else 0


def dispatcher_bench(*, duration_s: float, quick: bool) -> int:
    return asyncio.run(run_dispatcher_bench(duration_s=duration_s, quick=quick))
