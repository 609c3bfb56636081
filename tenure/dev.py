"""``tenure dev``: the whole stack on one machine without Docker.

Starts the in-memory broker (unless ``TENURE_KAFKA_BOOTSTRAP_SERVERS`` is set)
and PostgreSQL (unless ``DATABASE_URL`` / ``TENURE_DATABASE_URL`` is set),
migrates, creates the topics, makes a development write key and admin token on
first run (kept in the state directory), starts every service as its own
process, prints how to use it, and stops everything on Ctrl-C.

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
from pathlib import Path
from types import FrameType

import httpx

from shared.auth import hash_token
from shared.events import ALL_TOPICS
from shared.kafka.topics import ensure_topics, with_dead_letters
from shared.settings import KafkaSettings
from tenure.dev_providers import LocalProviders, dispatcher_environment, start_local_providers
from tenure.embedded import (
    EmbeddedBroker,
    EmbeddedPostgres,
    PortTaken,
    ensure_port_free,
    machine_sized_settings,
    project_state_dir,
)
from tenure.migrate import migrate_all
from tenure.services import SERVICES
from tenure.supervise import RestartPolicy

READY_TIMEOUT_S = 60.0
PROMETHEUS_PORT = 9090
ALERT_RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "alerts.yml"


@dataclass
class DevOptions:
    kafka_port: int = 9092
    base_port: int | None = None
    exit_when_ready: bool = False
    state_dir: Path = field(default_factory=project_state_dir)


def _secret(state_dir: Path, filename: str, override_env: str) -> str:
    """A development secret: the override variable, else kept in the state directory."""
    given = os.environ.get(override_env)
    if given:
        return given
    path = state_dir / filename
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(24)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


class DevStack:
    def __init__(self, options: DevOptions) -> None:
        self.options = options
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

    # --- bring-up -------------------------------------------------------------

    def start(self) -> None:
        state = self.options.state_dir
        state.mkdir(parents=True, exist_ok=True)
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
        self.write_key = _secret(state, "write-key", "TENURE_DEV_WRITE_KEY")
        self.admin_token = _secret(state, "admin-token", "TENURE_DEV_ADMIN_TOKEN")
        self.env["TENURE_INGEST_WRITE_KEY_HASHES"] = _joined(
            self.env.get("TENURE_INGEST_WRITE_KEY_HASHES"), hash_token(self.write_key)
        )
        for variable in (
            "TENURE_SEGMENTER_ADMIN_TOKEN_HASHES",
            "TENURE_JOURNEY_ADMIN_TOKEN_HASHES",
            "TENURE_METRICS_ADMIN_TOKEN_HASHES",
        ):
            self.env[variable] = _joined(self.env.get(variable), hash_token(self.admin_token))
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
            _secret(state, "link-secret", "TENURE_DEV_LINK_SECRET"),
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
            _secret(state, "session-secret", "TENURE_DEV_SESSION_SECRET"),
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
        self.broker = EmbeddedBroker(self.options.kafka_port, state / "logs" / "broker.log")
        self.broker.start()
        self.env["TENURE_KAFKA_BOOTSTRAP_SERVERS"] = self.broker.bootstrap_servers
        _say(f"embedded broker (in memory) on {self.broker.bootstrap_servers}")

    def _start_postgres(self, state: Path) -> None:
        given = self.env.get("TENURE_DATABASE_URL") or self.env.get("DATABASE_URL")
        if given:
            self.env["TENURE_DATABASE_URL"] = given
            _say("using the database at DATABASE_URL")
            return
        self.postgres = EmbeddedPostgres(state / "postgres", settings=machine_sized_settings())
        self.env["TENURE_DATABASE_URL"] = self.postgres.start()
        _say(f"embedded PostgreSQL, data in {state / 'postgres'}")

    def _start_service(self, name: str) -> None:
        env = dict(self.env, TENURE_HTTP_PORT=str(self.ports[name]), TENURE_HTTP_HOST="127.0.0.1")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "tenure", "serve", name], env=env
        )
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
        jobs = "".join(
            f"  - job_name: {name}\n    static_configs:\n"
            f'      - targets: ["127.0.0.1:{service_port}"]\n'
            for name, service_port in self.ports.items()
        )
        (folder / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n"
            f"rule_files:\n  - {ALERT_RULES}\n  - {ALERT_RULES.parent / 'rules' / '*.yml'}\n"
            f"scrape_configs:\n{jobs}"
        )
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
        )
        log.close()
        self.prometheus_url = f"http://127.0.0.1:{port}"
        _say(
            f"local Prometheus on {self.prometheus_url} (scrapes every service, alert rules loaded)"
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        pending = set(self.processes)
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for name in sorted(pending):
                    process = self.processes[name]
                    if process.poll() is not None:
                        raise RuntimeError(f"the {name} service exited with {process.returncode}")
                    try:
                        answer = client.get(f"http://127.0.0.1:{self.ports[name]}/readyz")
                    except httpx.TransportError:
                        continue
                    if answer.status_code == 200:
                        pending.discard(name)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not ready after {READY_TIMEOUT_S:.0f}s: {sorted(pending)}")
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

    def wait(self) -> int:
        """Block until a signal, restarting services that die; return the exit code to use."""
        stop = {"signal": False}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop["signal"] = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        #: service -> when to restart it
        due: dict[str, float] = {}
        given_up: set[str] = set()
        while not stop["signal"]:
            now = time.monotonic()
            for name, process in self.processes.items():
                if name in due or name in given_up or process.poll() is None:
                    continue
                ran_for = now - self.started_at[name]
                delay = self.policies[name].next_delay(now=now, ran_for_s=ran_for)
                if delay is None:
                    given_up.add(name)
                    _say(
                        f"the {name} service exited with {process.returncode} again; it died "
                        f"{self.policies[name].max_restarts + 1} times within "
                        f"{self.policies[name].window_s:.0f} s, so it stays down. "
                        "The broker and the other services keep running; Ctrl-C stops all."
                    )
                    continue
                due[name] = now + delay
                _say(
                    f"the {name} service exited with {process.returncode}; restarting it in "
                    f"{delay:.0f} s (restart {self.policies[name].restarts_in_window} of at most "
                    f"{self.policies[name].max_restarts} in {self.policies[name].window_s:.0f} s). "
                    "The broker and the other services keep running."
                )
            for name, when in list(due.items()):
                if when <= now:
                    del due[name]
                    self._start_service(name)
                    _say(f"restarted the {name} service (pid {self.processes[name].pid})")
            time.sleep(0.3)
        return 0

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


def run_dev(options: DevOptions) -> int:
    stack = DevStack(options)
    try:
        stack.start()
    except PortTaken as exc:
        _say(f"cannot start: {exc}")
        stack.stop()
        return 2
    except (RuntimeError, OSError) as exc:
        _say(f"cannot start: {exc}")
        stack.stop()
        return 1
    except KeyboardInterrupt:
        stack.stop()
        return 130
    print(stack.banner(), flush=True)
    code = 0 if options.exit_when_ready else stack.wait()
    _say("stopping")
    stack.stop()
    return code


def _joined(existing: str | None, digest: str) -> str:
    return ",".join(part for part in (existing, digest) if part)


def _say(message: str) -> None:
    print(f"tenure: {message}", file=sys.stderr, flush=True)
