"""The console served on loopback beside the five real services (one broker of this
module, one database with every service's schema), as ``tenure dev`` runs them, and a
customer with a history posted through ingest."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from shared.db.migrations import upgrade
from shared.events import ALL_TOPICS
from shared.kafka.topics import ensure_topics, with_dead_letters
from tenure.embedded import EmbeddedBroker, free_port
from tenure.services import SERVICES
from tenure.sinks import SmtpSink
from tests.conftest import NewDatabase
from tests.integration.journey.conftest import module_kafka
from tests.support.services import (
    ADMIN_TOKEN,
    WRITE_KEY,
    build_app,
    environment,
    serve_in_thread,
    service_env,
)

UPSTREAMS = ("ingest", "segmenter", "journey", "dispatcher", "metrics")
SESSION_SECRET = "console-test-session-secret-0123456789abcdef"
__all__ = ["ADMIN", "ADMIN_TOKEN"]

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Stack:
    urls: dict[str, str]
    customer: str
    email: str
    smtp: SmtpSink

    @property
    def console(self) -> str:
        return self.urls["console"]

    def api(self, service: str) -> httpx.Client:
        return httpx.Client(base_url=self.urls[service], headers=ADMIN, timeout=30)

    def until(self, what: Callable[[], Any], *, within_s: float = 60.0) -> Any:
        """Poll ``what`` until it answers something truthy."""
        deadline = time.monotonic() + within_s
        while True:
            found = what()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"not true within {within_s} s: {what}")
            time.sleep(0.2)

    def track(self, customer: str, event: str, **properties: Any) -> None:
        answer = httpx.post(
            f"{self.urls['ingest']}/v1/track",
            auth=(WRITE_KEY, ""),
            json={
                "userId": customer,
                "event": event,
                "properties": properties,
                "messageId": str(uuid.uuid4()),
            },
        )
        assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, new_database: NewDatabase) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("console")
    broker = EmbeddedBroker(port=free_port(), log_path=state / "broker.log")
    broker.start()
    smtp = SmtpSink(maildir=state / "Maildir").start()
    try:
        kafka = module_kafka(broker)
        asyncio.run(ensure_topics(kafka, with_dead_letters(ALL_TOPICS)))
        url: str = asyncio.run(new_database())  # type: ignore[arg-type]
        for name in UPSTREAMS:
            if SERVICES[name].has_migrations:
                upgrade(script_location=SERVICES[name].migrations_dir, database_url=url)
        urls: dict[str, str] = {}
        with ExitStack() as running:
            for name in UPSTREAMS:
                env = service_env(name, bootstrap_servers=kafka.bootstrap_servers, database_url=url)
                env["TENURE_KAFKA_PARTITIONS"] = "3"
                if name == "dispatcher":
                    env |= {
                        "TENURE_SMTP_HOST": "127.0.0.1",
                        "TENURE_SMTP_PORT": str(smtp.port),
                        "TENURE_SMTP_SECURITY": "none",
                    }
                with environment(env):
                    app = build_app(name)
                urls[name] = running.enter_context(serve_in_thread(app))
            env = service_env("console", bootstrap_servers="127.0.0.1:9", database_url=url)
            env |= {f"TENURE_CONSOLE_{name.upper()}_URL": urls[name] for name in UPSTREAMS}
            env["TENURE_CONSOLE_SESSION_SECRET"] = SESSION_SECRET
            with environment(env):
                console = build_app("console")
            urls["console"] = running.enter_context(serve_in_thread(console))
            stack = Stack(urls=urls, customer=f"ada-{uuid.uuid4().hex[:8]}", email="", smtp=smtp)
            _a_customer(stack)
            yield stack
    finally:
        smtp.stop()
        broker.stop()


def _a_customer(stack: Stack) -> None:
    """Ada: an identify with her email, two orders; waits until the segmenter and the
    dispatcher know her."""
    stack.email = f"{stack.customer}@example.com"
    answer = httpx.post(
        f"{stack.urls['ingest']}/v1/identify",
        auth=(WRITE_KEY, ""),
        json={
            "userId": stack.customer,
            "traits": {"email": stack.email, "name": "Ada <b>Lovelace</b>", "plan": "pro"},
        },
    )
    assert answer.status_code == 200, answer.text
    stack.track(stack.customer, "Order Completed", revenue=42, orderId="o-1")
    stack.track(stack.customer, "Order Completed", revenue=58, orderId="o-2")
    with stack.api("segmenter") as segmenter:

        def counted() -> bool:
            answer = segmenter.get(f"/v1/profiles/{stack.customer}")
            if answer.status_code != 200:
                return False
            return any(e["count"] == 2 for e in answer.json()["events"])

        stack.until(counted)


class Browser(httpx.Client):
    """A signed-in client of the console, cookie jar and all."""

    csrf: str = ""

    def page_csrf(self, path: str) -> str:
        answer = self.get(path)
        assert answer.status_code == 200, answer.text
        return csrf_of(answer.text)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def sign_in(base_url: str, token: str = ADMIN_TOKEN) -> Browser:
    client = Browser(base_url=base_url, timeout=30)
    page = client.get("/login")
    answer = client.post(
        "/login", data={"token": token, "csrf": csrf_of(page.text), "next": "/customers"}
    )
    assert answer.status_code == 303, answer.text
    client.csrf = client.page_csrf("/customers")
    return client


@pytest.fixture
def browser(stack: Stack) -> Iterator[Browser]:
    client = sign_in(stack.console)
    try:
        yield client
    finally:
        client.close()
