"""``tenure dev``: the whole stack on one machine without Docker.

Starts the in-memory broker (unless ``TENURE_KAFKA_BOOTSTRAP_SERVERS`` is set)
and PostgreSQL (unless ``DATABASE_URL`` / ``TENURE_DATABASE_URL`` is set),
migrates, creates the topics, makes a development write key and admin token on
first run (kept in the state directory), starts every service as its own
process, prints how to use it, and stops everything on Ctrl-C.

Readiness has no fixed time limit: ``tenure dev`` waits as long as every service
process is alive and making progress (using CPU time, or answering HTTP),
up to ``--ready-timeout`` / ``TENURE_DEV_READY_TIMEOUT_S`` in all; a service that
makes no progress for ``TENURE_DEV_STALL_TIMEOUT_S`` fails the start. A failed or
interrupted start, a stop, or a SIGKILL of ``tenure dev`` leaves no process behind
(:mod:`tenure.lifetime`).

A service that dies is restarted with backoff (1, 2, 4 … s), at most five times
in five minutes (:class:`~tenure.supervise.RestartPolicy`); the broker, whose
topics and unconsumed events live only in its memory, and the other services
keep running meanwhile, and the console says what happened.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import httpx
from aiokafka.errors import KafkaError
from pydantic import SecretStr, ValidationError

from shared.auth import hash_token
from shared.events import ALL_TOPICS
from shared.kafka.topics import ensure_topics, with_dead_letters
from shared.settings import KafkaSettings
from tenure.dev_providers import LocalProviders, dispatcher_environment, start_local_providers
from tenure.dev_settings import DevSettings
from tenure.embedded import (
    EmbeddedBroker,
    EmbeddedPostgres,
    PortTaken,
    ensure_port_free,
    machine_sized_settings,
    project_state_dir,
)
from tenure.lifetime import (
    OtherRunAlive,
    RunRecord,
    cpu_ticks,
    die_with_parent,
    start_postgres_watchdog,
    stop_postgres,
)
from tenure.migrate import migrate_all
from tenure.services import SERVICES
from tenure.supervise import RestartPolicy
from tenure.watch import (
    Postmaster,
    Reachability,
    broker_loss_banner,
    iso,
    recreate_topics,
    request_replays,
)

PROMETHEUS_PORT = 9090
ALERT_RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "alerts.yml"


@dataclass
class DevOptions:
    kafka_port: int = 9092
    base_port: int | None = None
    exit_when_ready: bool = False
    state_dir: Path = field(default_factory=project_state_dir)
    #: the longest a start may take in all (None: ``TENURE_DEV_READY_TIMEOUT_S``)
    ready_timeout_s: float | None = None


@dataclass
class ServerWatch:
    """What ``tenure dev`` knows of its servers between two looks (every ``every_s``)."""

    postmaster: Postmaster | None = None
    database: Reachability | None = None
    broker_since: datetime = field(default_factory=lambda: datetime.now(UTC))
    every_s: float = 1.0
    next_check: float = 0.0


def _secret(state_dir: Path, filename: str, given: SecretStr | None) -> str:
    """A development secret: the override variable, else kept in the state directory."""
    if given is not None and given.get_secret_value():
        return given.get_secret_value()
    path = state_dir / filename
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(24)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


class DevStack:
    def __init__(self, options: DevOptions, settings: DevSettings | None = None) -> None:
        self.options = options
        self.settings = settings or DevSettings()
        self.record = RunRecord(options.state_dir)
        self.watchdog: subprocess.Popen[bytes] | None = None
        self.env = dict(os.environ)
        self.broker: EmbeddedBroker | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.prometheus: subprocess.Popen[bytes] | None = None
        self.prometheus_url: str | None = None
        self.started_at: dict[str, float] = {}
        self.policies: dict[str, RestartPolicy] = {name: RestartPolicy() for name in SERVICES}
        self.providers: LocalProviders | None = None
        self.servers = ServerWatch()
        #: service -> when to restart it; services given up on
        self._due: dict[str, float] = {}
        self._given_up: set[str] = set()

    # --- bring-up -------------------------------------------------------------

    def start(self) -> None:
        state = self.options.state_dir
        state.mkdir(parents=True, exist_ok=True)
        self.record.reap_previous(_say)
        for index, (name, spec) in enumerate(SERVICES.items()):
            base = self.options.base_port
            self.ports[name] = spec.port if base is None else base + index
            ensure_port_free(self.ports[name], f"the {name} service")
        self._start_broker(state)
        self._start_postgres(state)
        database_url = self.env["TENURE_DATABASE_URL"]
        _say("migrating the database")
        migrate_all(database_url)
        kafka = KafkaSettings(bootstrap_servers=self.env["TENURE_KAFKA_BOOTSTRAP_SERVERS"])
        created = asyncio.run(ensure_topics(kafka, with_dead_letters(ALL_TOPICS)))
        _say(f"topics ready ({len(created)} created)")
        self.write_key = _secret(state, "write-key", self.settings.write_key)
        self.admin_token = _secret(state, "admin-token", self.settings.admin_token)
        self.env["TENURE_INGEST_WRITE_KEY_HASHES"] = _joined(
            self.env.get("TENURE_INGEST_WRITE_KEY_HASHES"), hash_token(self.write_key)
        )
        for variable in (
            "TENURE_SEGMENTER_ADMIN_TOKEN_HASHES",
            "TENURE_JOURNEY_ADMIN_TOKEN_HASHES",
            "TENURE_METRICS_ADMIN_TOKEN_HASHES",
        ):
            self.env[variable] = _joined(self.env.get(variable), hash_token(self.admin_token))
        # publishing a journey checks the segments and templates it names with these
        for peer in ("segmenter", "dispatcher"):
            if peer in self.ports:
                self.env.setdefault(
                    f"TENURE_JOURNEY_{peer.upper()}_URL", f"http://127.0.0.1:{self.ports[peer]}"
                )
        self.env.setdefault("TENURE_JOURNEY_PEER_TOKEN", self.admin_token)
        if "dispatcher" in self.ports:
            self._start_local_providers(state)
        if "console" in self.ports:
            self._configure_console(state)
        self.env.setdefault("TENURE_LOG_FORMAT", "text")
        for name in SERVICES:
            self._start_service(name)
        self._wait_ready()
        self._start_prometheus(state)

    def _start_local_providers(self, state: Path) -> None:
        """A local SMTP server (Maildir) and provider endpoint for the dispatcher."""
        self.providers = start_local_providers(state)
        self.env["TENURE_DISPATCHER_ADMIN_TOKEN_HASHES"] = _joined(
            self.env.get("TENURE_DISPATCHER_ADMIN_TOKEN_HASHES"), hash_token(self.admin_token)
        )
        self.env.setdefault(
            "TENURE_DISPATCHER_LINK_SECRET",
            _secret(state, "link-secret", self.settings.link_secret),
        )
        self.env.setdefault(
            "TENURE_DISPATCHER_PUBLIC_BASE_URL", f"http://127.0.0.1:{self.ports['dispatcher']}"
        )
        for name, value in dispatcher_environment(state, self.providers).items():
            self.env.setdefault(name, value)
        _say(
            f"local SMTP server on 127.0.0.1:{self.providers.smtp.port}, "
            f"mail kept in {self.providers.maildir}"
        )

    def _configure_console(self, state: Path) -> None:
        """The console signs in with the development admin token and calls the services
        on their ports here."""
        self.env["TENURE_CONSOLE_ADMIN_TOKEN_HASHES"] = _joined(
            self.env.get("TENURE_CONSOLE_ADMIN_TOKEN_HASHES"), hash_token(self.admin_token)
        )
        self.env.setdefault(
            "TENURE_CONSOLE_SESSION_SECRET",
            _secret(state, "session-secret", None),
        )
        for name, port in self.ports.items():
            if name != "console":
                self.env.setdefault(
                    f"TENURE_CONSOLE_{name.upper()}_URL", f"http://127.0.0.1:{port}"
                )

    def _start_broker(self, state: Path) -> None:
        if self.env.get("TENURE_KAFKA_BOOTSTRAP_SERVERS"):
            _say(f"using the broker at {self.env['TENURE_KAFKA_BOOTSTRAP_SERVERS']}")
            return
        self.broker = EmbeddedBroker(
            self.options.kafka_port, state / "logs" / "broker.log", die_with_parent=True
        )
        self.broker.start()
        if self.broker.process is not None:
            self.record.add("broker", self.broker.process.pid)
        self.env["TENURE_KAFKA_BOOTSTRAP_SERVERS"] = self.broker.bootstrap_servers
        self.servers.broker_since = datetime.now(UTC)
        _say(f"embedded broker (in memory) on {self.broker.bootstrap_servers}")

    def _start_postgres(self, state: Path) -> None:
        given = self.env.get("TENURE_DATABASE_URL") or self.env.get("DATABASE_URL")
        if given:
            self.env["TENURE_DATABASE_URL"] = given
            self.servers.database = Reachability(given)
            _say("using the database at DATABASE_URL")
            return
        self.postgres = EmbeddedPostgres(state / "postgres", settings=machine_sized_settings())
        self.watchdog = start_postgres_watchdog(self.postgres.data_dir)
        self.env["TENURE_DATABASE_URL"] = self.postgres.start()
        self.servers.postmaster = Postmaster.of(self.postgres.data_dir)
        _say(f"embedded PostgreSQL, data in {state / 'postgres'}")

    def _start_service(self, name: str) -> None:
        env = dict(self.env, TENURE_HTTP_PORT=str(self.ports[name]), TENURE_HTTP_HOST="127.0.0.1")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "tenure", "serve", name, "--checked"],
            env=env,
            preexec_fn=die_with_parent(),  # only calls prctl: safe with threads
        )
        self.record.add(name, self.processes[name].pid)
        self.started_at[name] = time.monotonic()

    def _start_prometheus(self, state: Path) -> None:
        """A local Prometheus scraping every service, when the binary is installed."""
        binary = shutil.which("prometheus")
        if binary is None:
            _say("prometheus is not installed: no local Prometheus (apt-get install prometheus)")
            return
        base = self.options.base_port
        port = PROMETHEUS_PORT if base is None else base + len(SERVICES)
        try:
            ensure_port_free(port, "Prometheus")
        except PortTaken as exc:
            _say(f"no local Prometheus: {exc}")
            return
        folder = state / "prometheus"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "prometheus.yml").write_text(prometheus_config(self.ports))
        (state / "logs").mkdir(parents=True, exist_ok=True)
        log = (state / "logs" / "prometheus.log").open("ab")
        self.prometheus = subprocess.Popen(
            [
                binary,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=log,
            preexec_fn=die_with_parent(),  # only calls prctl: safe with threads
        )
        log.close()
        self.record.add("prometheus", self.prometheus.pid)
        self.prometheus_url = f"http://127.0.0.1:{port}"
        _say(
            f"local Prometheus on {self.prometheus_url} (scrapes every service, alert rules loaded)"
        )

    def _wait_ready(self) -> None:
        """Wait while every service is alive and making progress, up to the overall limit."""
        limit = self.options.ready_timeout_s or self.settings.ready_timeout_s
        stall = self.settings.stall_timeout_s
        began = time.monotonic()
        last_said = began
        progress: dict[str, tuple[int | None, float]] = {}  # name -> (cpu ticks, when it moved)
        pending = set(self.processes)
        with httpx.Client(timeout=2.0) as client:
            while pending:
                now = time.monotonic()
                for name in sorted(pending):
                    process = self.processes[name]
                    if process.poll() is not None:
                        raise RuntimeError(f"the {name} service exited with {process.returncode}")
                    ticks = cpu_ticks(process.pid)
                    seen = progress.get(name)
                    if seen is None or ticks is None or ticks != seen[0]:
                        progress[name] = (ticks, now)
                    try:
                        answer = client.get(f"http://127.0.0.1:{self.ports[name]}/readyz")
                    except httpx.TransportError:
                        continue
                    progress[name] = (ticks, now)  # it answers: alive, waiting on something
                    if answer.status_code == 200:
                        pending.discard(name)
                stalled = sorted(n for n in pending if now - progress[n][1] > stall)
                if stalled:
                    raise RuntimeError(
                        f"{', '.join(stalled)} made no progress for {stall:.0f} s (no CPU time, "
                        "no answer); see their output above (TENURE_DEV_STALL_TIMEOUT_S)"
                    )
                if now - began > limit:
                    raise RuntimeError(
                        f"not ready after {limit:g} s: {sorted(pending)}; give more time with "
                        "--ready-timeout or TENURE_DEV_READY_TIMEOUT_S"
                    )
                if pending and now - last_said >= 15:
                    last_said = now
                    _say(
                        f"still starting after {now - began:.0f} s: {', '.join(sorted(pending))} "
                        "(alive and making progress)"
                    )
                time.sleep(0.2)

    # --- run and stop ---------------------------------------------------------

    def banner(self) -> str:
        ingest = f"http://127.0.0.1:{self.ports['ingest']}"
        lines = ["", "Tenure is running.", ""]
        lines += [
            f"  {name:<11} http://127.0.0.1:{port}   (API docs: /docs, metrics: /metrics)"
            for name, port in self.ports.items()
        ]
        if "metrics" in self.ports:
            lines.append(
                f"  report      http://127.0.0.1:{self.ports['metrics']}/report#token={self.admin_token}"
            )
        if "console" in self.ports:
            lines.append(
                f"  console     http://127.0.0.1:{self.ports['console']}/   "
                "(sign in with the admin token below)"
            )
        if self.prometheus_url:
            lines.append(f"  prometheus  {self.prometheus_url}")
        if self.providers is not None:
            lines += [
                f"  mail        {self.providers.maildir}   (every email sent; "
                f"`mutt -f {self.providers.maildir}`)",
                f"  push/social {self.providers.requests_log}   (every provider request)",
            ]
        lines += [
            f"  broker      {self.env['TENURE_KAFKA_BOOTSTRAP_SERVERS']}",
            "",
            f"  write key   {self.write_key}",
            f"  admin token {self.admin_token}",
            "",
            "  Send an event:",
            f"    curl -u '{self.write_key}:' {ingest}/v1/track \\",
            "      -H 'Content-Type: application/json' \\",
            '      -d \'{"userId": "user-1", "event": "Order Completed", '
            '"properties": {"revenue": 42}}\'',
            "",
            "  Press Ctrl-C to stop.",
        ]
        return "\n".join(lines)

    def wait(self, stop: StopRequest) -> int:
        """Block until `stop` is requested, restarting services that die; return the exit code."""
        while not stop.requested:
            self.supervise_once()
            time.sleep(0.3)
        return 0

    def supervise_once(self) -> None:
        """One look at the servers and the services: restart what died (with backoff),
        give up on a service that dies too often. ``wait`` calls it in a loop; a runner of
        its own (``tenure faults``) may too."""
        self._watch_servers()
        now = time.monotonic()
        for name, process in self.processes.items():
            if name in self._due or name in self._given_up or process.poll() is None:
                continue
            ran_for = now - self.started_at[name]
            delay = self.policies[name].next_delay(now=now, ran_for_s=ran_for)
            if delay is None:
                self._given_up.add(name)
                _say(
                    f"the {name} service exited with {process.returncode} again; it died "
                    f"{self.policies[name].max_restarts + 1} times within "
                    f"{self.policies[name].window_s:.0f} s, so it stays down. "
                    "The broker and the other services keep running; Ctrl-C stops all."
                )
                continue
            self._due[name] = now + delay
            _say(
                f"the {name} service exited with {process.returncode}; restarting it in "
                f"{delay:.0f} s (restart {self.policies[name].restarts_in_window} of at most "
                f"{self.policies[name].max_restarts} in {self.policies[name].window_s:.0f} s). "
                "The broker and the other services keep running."
            )
        for name, when in list(self._due.items()):
            if when <= now:
                del self._due[name]
                self._start_service(name)
                _say(f"restarted the {name} service (pid {self.processes[name].pid})")

    # --- the servers: PostgreSQL and the broker ---------------------------------

    def _watch_servers(self) -> None:
        """Restart the embedded PostgreSQL or broker when it died (:mod:`tenure.watch`)."""
        watch, now = self.servers, time.monotonic()
        if now < watch.next_check:
            return
        watch.next_check = now + watch.every_s
        if self.postgres is not None and watch.postmaster and not watch.postmaster.alive():
            self._restart_postgres()
        if watch.database is not None and (line := watch.database.changed()):
            _say(line)
        broker = self.broker.process if self.broker is not None else None
        if self.broker is not None and (broker is None or broker.poll() is not None):
            # None: it died and did not start again; try again
            self._restart_broker(broker.returncode if broker is not None else None)

    def _restart_postgres(self) -> None:
        assert self.postgres is not None
        watch = self.servers
        _say(
            f"PostgreSQL (pid {watch.postmaster.pid if watch.postmaster else '?'}) died; "
            f"restarting it on the same data directory ({self.postgres.data_dir}). "
            "Nothing committed is lost; the services reconnect by themselves."
        )
        try:
            self.postgres.restart()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            _say(f"PostgreSQL did not start again ({exc}); trying again in {watch.every_s:g} s")
            return
        watch.postmaster = Postmaster.of(self.postgres.data_dir)
        _say(f"PostgreSQL restarted (pid {watch.postmaster.pid if watch.postmaster else '?'})")

    def _restart_broker(self, returncode: int | None) -> None:
        assert self.broker is not None
        watch = self.servers
        since, now = watch.broker_since, datetime.now(UTC)
        if self.broker.process is not None:  # None: it died before, and did not start again
            banner = broker_loss_banner(
                returncode=returncode,
                since=since,
                now=now,
                bootstrap_servers=self.broker.bootstrap_servers,
            )
            print(banner, file=sys.stderr, flush=True)
        self.broker.stop()
        try:
            self.broker.start()
            kafka = KafkaSettings(bootstrap_servers=self.broker.bootstrap_servers)
            done = asyncio.run(recreate_topics(kafka))
        except (RuntimeError, OSError, KafkaError) as exc:
            _say(f"the broker did not start again ({exc}); trying again in {watch.every_s:g} s")
            return
        if self.broker.process is not None:
            self.record.add("broker", self.broker.process.pid)
        # what was lost was produced since the dead broker started; from now on, since now
        watch.broker_since = now
        _say(
            f"broker restarted on {self.broker.bootstrap_servers} with its topics "
            f"({'; '.join(done)}); resend every event sent since {iso(since)}"
        )
        answers = request_replays(self.ports, self.admin_token, since)
        _say(
            "asked the services to publish again what they produced since then: "
            + ", ".join(f"{name} {answer}" for name, answer in answers.items())
        )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                process.wait(timeout=35)
            except subprocess.TimeoutExpired:
                _say(f"the {name} service did not stop in time; killing it")
                process.kill()
                process.wait()
        if self.prometheus is not None and self.prometheus.poll() is None:
            self.prometheus.terminate()
            try:
                self.prometheus.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.prometheus.kill()
                self.prometheus.wait()
        if self.providers is not None:
            self.providers.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()
            stop_postgres(self.postgres.data_dir)
        if self.watchdog is not None:
            self.watchdog.terminate()
            self.watchdog.wait()
        self.record.clear()


def prometheus_config(ports: dict[str, int]) -> str:
    """The local Prometheus's configuration: every service, every alert rule."""
    jobs = "".join(
        f"  - job_name: {name}\n    static_configs:\n"
        f'      - targets: ["127.0.0.1:{service_port}"]\n'
        for name, service_port in ports.items()
    )
    return (
        "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n"
        f"rule_files:\n  - {ALERT_RULES}\n  - {ALERT_RULES.parent / 'rules' / '*.yml'}\n"
        f"scrape_configs:\n{jobs}"
    )


class _Interrupted(Exception):
    pass


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise _Interrupted


class StopRequest:
    """Set by SIGINT or SIGTERM once the stack is up: the wait loop ends at its next turn.

    Installed before the banner is printed, so a Ctrl-C the moment "Press Ctrl-C" shows
    stops the stack cleanly instead of raising KeyboardInterrupt mid-print.
    """

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    @classmethod
    def installed(cls) -> StopRequest:
        stop = cls()
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        return stop


def run_dev(options: DevOptions) -> int:
    try:
        stack = DevStack(options)
    except ValidationError as exc:
        _say(f"cannot start: {exc}")
        return 2
    # a SIGTERM while starting stops what has started, as Ctrl-C does
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack.start()
        stop = StopRequest.installed()
    except (PortTaken, OtherRunAlive) as exc:
        signal.signal(signal.SIGTERM, previous)
        _say(f"cannot start: {exc}")
        stack.stop()
        return 2
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        signal.signal(signal.SIGTERM, previous)
        _say(f"cannot start: {exc}")
        stack.stop()
        return 1
    except (KeyboardInterrupt, _Interrupted):
        signal.signal(signal.SIGTERM, previous)
        _say("interrupted while starting; stopping what has started")
        stack.stop()
        return 130
    print(stack.banner(), flush=True)
    code = 0 if options.exit_when_ready else stack.wait(stop)
    _say("stopping")
    stack.stop()
    return code


def _joined(existing: str | None, digest: str) -> str:
    return ",".join(part for part in (existing, digest) if part)


def _say(message: str) -> None:
    print(f"tenure: {message}", file=sys.stderr, flush=True)
