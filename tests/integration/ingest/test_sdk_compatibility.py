"""The official SDKs post through a real ingest on loopback; every event is stored.

Python: Segment's SDK sends plain JSON by default and gzip on request, RudderStack's
sends gzip by default; both put the write key in the Basic username and in the body.

Node: the real npm packages, installed once into a cache directory
(``$TENURE_NPM_CACHE``, default ``~/.cache/tenure/npm-sdks``), run with their
default settings: RudderStack's gzips and, through axios, labels the body
``application/x-www-form-urlencoded``; Segment's sends plain JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

from services.ingest.app import create_app
from shared.settings import KafkaSettings
from tests.integration.ingest.conftest import WRITE_KEY, ingest_settings
from tests.support.kafka import TopicTail, json_value
from tests.support.servers import serving

SDKS: dict[str, Any] = {"segment": SegmentClient, "rudderstack": RudderClient}


@pytest.fixture(scope="module")
async def ingest_url(kafka_settings: KafkaSettings, topics: None) -> AsyncIterator[str]:
    async with serving(create_app(ingest_settings(kafka_settings))) as url:
        yield url


def _send_every_call(client: Any, tag: str) -> list[str]:
    """Each call type once, through the SDK's queue; the message ids it made."""
    user = f"sdk-{tag}"
    sent = [
        client.track(user_id=user, event="Order Completed", properties={"revenue": 9.5}),
        client.identify(user_id=user, traits={"plan": "pro", "tag": tag}),
        client.page(user_id=user, category="Docs", name="Pricing", properties={"path": "/p"}),
        client.screen(user_id=user, name="Home"),
        client.group(user_id=user, group_id="acme", traits={"seats": 3}),
        client.alias(previous_id=f"anon-{tag}", user_id=user),
        *(client.track(anonymous_id=f"anon-{tag}", event=f"Step {i}") for i in range(20)),
    ]
    assert all(ok for ok, _ in sent)
    client.shutdown()  # flush: sends what is queued as /v1/batch and waits
    return [message["messageId"] for _, message in sent]


@pytest.mark.parametrize("gzip", [True, False], ids=["gzip", "plain"])
@pytest.mark.parametrize("sdk", sorted(SDKS))
async def test_every_sdk_event_reaches_the_topic(
    ingest_url: str, events_tail: TopicTail, sdk: str, gzip: bool
) -> None:
    errors: list[Any] = []
    client = SDKS[sdk](
        write_key=WRITE_KEY,
        host=ingest_url,
        gzip=gzip,
        upload_interval=0.05,
        max_retries=0,
        on_error=lambda error, batch: errors.append(error),
    )
    tag = f"{sdk}-{'gz' if gzip else 'plain'}"
    message_ids = await asyncio.to_thread(_send_every_call, client, tag)
    assert errors == []
    assert len(set(message_ids)) == 26
    for message_id in message_ids:
        record = await events_tail.wait_for_text(message_id)
        stored = json_value(record)
        assert stored["messageId"] == message_id
        assert record.key in (f"sdk-{tag}".encode(), f"anon-{tag}".encode())


#: the Node SDKs under test, pinned (the npm package names and versions)
NODE_SDKS = {
    "rudderstack": ("@rudderstack/rudder-sdk-node", "3.1.1"),
    "segment": ("@segment/analytics-node", "3.1.0"),
}
NODE_SCRIPT = Path(__file__).parent / "node" / "send.js"


def _unavailable(reason: str) -> None:
    """Skip on a developer's machine without node or the npm registry; fail in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the Node SDK tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """The pinned Node SDKs installed with npm into a cache directory (once)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        _unavailable("node and npm are not installed")
    default = Path.home() / ".cache" / "tenure" / "npm-sdks"
    folder = Path(os.environ.get("TENURE_NPM_CACHE", default))
    wanted = [f"{name}@{version}" for name, version in NODE_SDKS.values()]
    stamp = folder / "installed.txt"
    if not stamp.exists() or stamp.read_text().split() != wanted:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            result = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(folder), *wanted],
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            _unavailable("npm install timed out (no registry?)")
        if result.returncode != 0:
            _unavailable(f"npm install failed (no registry?): {result.stderr[-500:]}")
        stamp.write_text("\n".join(wanted))
    return folder / "node_modules"


@pytest.mark.parametrize("sdk", sorted(NODE_SDKS))
async def test_every_node_sdk_event_with_default_settings_reaches_the_topic(
    ingest_url: str, events_tail: TopicTail, node_modules: Path, sdk: str
) -> None:
    tag = f"node-{sdk}-{os.getpid()}"
    result = await asyncio.to_thread(
        subprocess.run,
        ["node", str(NODE_SCRIPT), sdk, ingest_url, WRITE_KEY, tag],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(node_modules)},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["errors"] == [], report["errors"]
    assert len(set(report["sent"])) == 26
    for message_id in report["sent"]:
        record = await events_tail.wait_for_text(message_id)
        stored = json_value(record)
        assert stored["messageId"] == message_id
        assert record.key in (f"sdk-{tag}".encode(), f"anon-{tag}".encode())
