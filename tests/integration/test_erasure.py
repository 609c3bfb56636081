"""GDPR erasure end to end: every service on one broker and one database, a customer
with history in each (events, a segment membership, a completed run whose send failed
with a provider answer quoting the address, a waiting run, deferred deliveries, a
message sent, channel preferences, metrics counts); ``DELETE /v1/profiles/{id}``; then
every text, varchar, json, jsonb and bytea column of every table of every schema is
searched for the customer's email, name and id. Nothing may hold them but the
tombstones listed in :data:`TOMBSTONES`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from shared.db.migrations import upgrade
from shared.db.outbox_pack import unpack
from shared.events import ALL_TOPICS
from shared.events.dispatch_requests import DispatchRequest, SendAtLocalTime, SendNow
from shared.events.registry import DISPATCH_REQUESTS
from shared.kafka.producer import EventPublisher, Message
from shared.kafka.topics import ensure_topics, with_dead_letters
from shared.settings import KafkaSettings
from tenure.services import SERVICES
from tenure.sinks import SmtpSink
from tests.support.services import (
    ADMIN_TOKEN,
    WRITE_KEY,
    build_app,
    environment,
    serve_in_thread,
    service_env,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WRITE = httpx.BasicAuth(WRITE_KEY, "")

#: where an erased id may stay, and only there: ``(schema, table, column)``. Each row
#: found there is checked to hold nothing else of the customer (see ``_tombstone_only``).
TOMBSTONES = frozenset(
    {
        # the profile projections: id, version, ``deleted``, ``updated_at``; every
        # personal field dropped (a stale update must not bring the data back)
        ("journey", "profiles", "customer_id"),
        ("dispatcher", "profiles", "customer_id"),
        # the metrics erasure log: id and ``erased_at``
        ("metrics", "erasures", "customer_id"),
        # with ``?suppress=true`` only: the segmenter's suppression list (id, when, and
        # the reason ``erased``), so that the customer's later events are dropped
        ("segmenter", "suppressions", "customer_id"),
    }
)


async def _until(check: Callable[[], Awaitable[Any]], what: str, within_s: float = 60.0) -> Any:
    for _ in range(int(within_s / 0.1)):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"never: {what}")


@contextmanager
def _stack(env: dict[str, str]) -> Iterator[dict[str, tuple[str, Any]]]:
    """Every service served on loopback, all on the same broker and database."""
    with ExitStack() as stack, environment(env):
        served: dict[str, tuple[str, Any]] = {}
        for name in sorted(SERVICES):
            app = build_app(name)
            served[name] = (stack.enter_context(serve_in_thread(app)), app)
        yield served


def _consuming(app: Any) -> bool:
    runtime = getattr(app.state, "runtime", None)
    runner = getattr(runtime, "runner", None)
    return runner is None or runner.started.is_set()


@pytest.mark.parametrize("suppress", [False, True], ids=["erase", "erase-and-suppress"])
async def test_an_erased_customer_leaves_nothing_but_tombstones(
    kafka_settings: KafkaSettings,
    bootstrap_servers: str,
    new_database: Any,
    tmp_path: Any,
    suppress: bool,
) -> None:
    tag = uuid.uuid4().hex[:10]
    customer = f"cust-{tag}"
    email = f"zelda.{tag}@example.com"
    name = f"Zelda Quuxington {tag}"
    needles = {"customer id": customer, "email": email, "name": name}

    await ensure_topics(kafka_settings, with_dead_letters(ALL_TOPICS))
    url = await new_database()
    for spec in SERVICES.values():
        if spec.has_migrations:
            await asyncio.to_thread(upgrade, script_location=spec.migrations_dir, database_url=url)
    # the provider refuses the address once, quoting it (as real SMTP servers do)
    refused: list[str] = []

    def reply(to: list[str], _: bytes) -> str | None:
        if email in to and not refused:
            refused.append(email)
            return f"550 5.1.1 <{to[0]}>: Recipient address rejected ({name})"
        return None

    smtp = SmtpSink(maildir=tmp_path / "Maildir", reply=reply).start()
    env: dict[str, str] = {"TENURE_SMTP_PORT": str(smtp.port), "TENURE_SMTP_HOST": "127.0.0.1"}
    for service in SERVICES:
        env |= service_env(service, bootstrap_servers=bootstrap_servers, database_url=url)
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    db = await asyncpg.connect(dsn)
    publisher = EventPublisher(kafka_settings, client_id=f"erasure-{tag}")
    await publisher.start()
    try:
        with _stack(env) as served:
            await _until(
                lambda: asyncio.sleep(0, all(_consuming(app) for _, app in served.values())),
                "every consumer started",
            )
            clients = {
                n: httpx.AsyncClient(base_url=base, timeout=30) for n, (base, _) in served.items()
            }
            try:
                held = await _history(clients, db, publisher, customer, email, name)
                # the search finds the customer in every service before the erasure
                before = await _search(db, needles)
                for schema in ("segmenter", "journey", "dispatcher", "metrics"):
                    assert any(f.startswith(f"{schema}.") for f in before), (schema, before)
                await _erase(clients, db, customer, suppress, held)
            except AssertionError:
                await _dump(db)
                raise
            finally:
                for client in clients.values():
                    await client.aclose()
            leftovers = await _search(db, needles)
            tombstones = await _tombstone_only(db, customer, suppress)
    finally:
        await publisher.stop()
        await db.close()
        smtp.stop()
    assert leftovers == [], "\n".join(leftovers)
    assert tombstones == []


async def _history(
    clients: dict[str, httpx.AsyncClient],
    db: asyncpg.Connection,
    publisher: EventPublisher,
    customer: str,
    email: str,
    name: str,
) -> dict[str, list[str]]:
    """History in every service: profile and membership (segmenter), a completed run
    whose send failed and a waiting run (journey), failed, deferred and sent deliveries
    and preferences (dispatcher), activity and funnel counts (metrics). The names are
    the test's own: the session's broker holds other tests' messages, which these
    services consume too."""
    tag = customer.removeprefix("cust-")
    signed_up = f"Signed Up {tag}"
    segment = await clients["segmenter"].post(
        "/v1/segments?wait=true",
        headers=ADMIN,
        json={
            "id": f"pro-{tag}",
            "name": "Pro",
            "rule": {"kind": "trait", "trait": "plan", "op": "eq", "value": "pro"},
        },
    )
    assert segment.status_code == 201, segment.text
    template = await clients["dispatcher"].post(
        "/v1/templates",
        headers=ADMIN,
        json={
            "id": f"hello-{tag}",
            "definition": {
                "name": "Hello",
                "variants": [{"channel": "email", "subject": "Hi", "text": "Hello"}],
            },
        },
    )
    assert template.status_code == 201, template.text
    # no quiet hours nor caps: what is sent now is sent now, what is deferred is so by
    # its send time
    policy = await clients["dispatcher"].put(
        "/v1/policy", headers=ADMIN, json={"caps": [], "quiet_hours": {"enabled": False}}
    )
    assert policy.status_code == 200, policy.text
    later = (
        (datetime.now(UTC) + timedelta(hours=6)).time().replace(minute=0, second=0, microsecond=0)
    )
    for journey_id, steps in (
        (
            f"welcome-{tag}",  # sends now: the provider refuses; the run completes
            [
                {
                    "id": "mail",
                    "type": "send",
                    "channels": ["email"],
                    "template_id": f"hello-{tag}",
                    "next": "done",
                    "on_failure": "done",
                },
                {"id": "done", "type": "exit"},
            ],
        ),
        (
            f"nurture-{tag}",  # a send deferred to a later hour, then a long wait
            [
                {
                    "id": "later",
                    "type": "send",
                    "channels": ["email"],
                    "template_id": f"hello-{tag}",
                    "send_time": {"kind": "local_time", "at": later.isoformat()},
                    "next": "pause",
                },
                {"id": "pause", "type": "wait", "duration": "P3D", "next": "done"},
                {"id": "done", "type": "exit"},
            ],
        ),
    ):
        definition = {"triggers": [{"kind": "event", "event": signed_up}], "steps": steps}
        created = await clients["journey"].post(
            "/v1/journeys",
            headers=ADMIN,
            json={"id": journey_id, "name": journey_id, "definition": definition},
        )
        assert created.status_code == 201, created.text
        published = await clients["journey"].post(
            f"/v1/journeys/{journey_id}/publish", headers=ADMIN
        )
        assert published.status_code == 200, published.text

    identify = await clients["ingest"].post(
        "/v1/identify",
        auth=WRITE,
        json={
            "userId": customer,
            "messageId": str(uuid.uuid4()),
            "traits": {"email": email, "name": name, "plan": "pro"},
        },
    )
    assert identify.status_code in (200, 202), identify.text
    await _until(
        lambda: db.fetchval(
            "SELECT email FROM dispatcher.profiles WHERE customer_id = $1", customer
        ),
        "the dispatcher's profile copy",
    )
    await _until(
        lambda: db.fetchval("SELECT 1 FROM journey.memberships WHERE customer_id = $1", customer),
        "the journey's membership copy",
    )
    track = await clients["ingest"].post(
        "/v1/track",
        auth=WRITE,
        json={
            "userId": customer,
            "messageId": str(uuid.uuid4()),
            "event": signed_up,
            "properties": {"email": email, "name": name},
        },
    )
    assert track.status_code in (200, 202), track.text
    choices = await clients["dispatcher"].patch(
        f"/v1/customers/{customer}/preferences", headers=ADMIN, json={"channels": {"push": False}}
    )
    assert choices.status_code == 200, choices.text
    # a request straight from another producer, deferred, its context personal
    request = DispatchRequest(
        dispatch_id=f"direct-{uuid.uuid4().hex}",
        customer_id=customer,
        channels=["email"],
        template_id=f"hello-{tag}",
        send_time=SendAtLocalTime(at=later),
        context={"name": name, "email": email},
        requested_at=datetime.now(UTC),
    )
    await publisher.publish(DISPATCH_REQUESTS.message(request))

    await _until(
        lambda: db.fetchval(
            "SELECT count(*) = 2 FROM dispatcher.deliveries "
            "WHERE customer_id = $1 AND status = 'deferred'",
            customer,
        ),
        "two deferred deliveries",
    )
    failed = await _until(
        lambda: db.fetchval(
            "SELECT reason FROM dispatcher.outcomes WHERE customer_id = $1 AND status = 'failed'",
            customer,
        ),
        "the refused send's outcome",
    )
    # a provider's answer may quote the address: the dispatcher keeps only its status
    # code (docs/security.md), so even this reason never held it
    assert failed.startswith("provider_error") and email not in failed
    # and one message sent (after the refusal): a touch in metrics
    sent = request.model_copy(
        update={"dispatch_id": f"direct-{uuid.uuid4().hex}", "send_time": SendNow()}
    )
    await publisher.publish(DISPATCH_REQUESTS.message(sent))
    await _until(
        lambda: db.fetchval("SELECT 1 FROM metrics.touches WHERE customer_id = $1", customer),
        "the send's touch in metrics",
    )
    await _until(
        lambda: db.fetchval(
            "SELECT count(*) = 2 FROM journey.runs WHERE customer_id = $1", customer
        ),
        "both runs",
    )
    await _until(
        lambda: db.fetchval(
            "SELECT status FROM journey.runs WHERE customer_id = $1 "
            "AND journey_id = $2 AND status = 'exited'",
            customer,
            f"welcome-{tag}",
        ),
        "the first run completed",
    )
    await _until(
        lambda: db.fetchval(
            "SELECT 1 FROM journey.run_timers t JOIN journey.runs r USING (run_id) "
            "WHERE r.customer_id = $1",
            customer,
        ),
        "the second run waiting",
    )
    for table in ("customers", "runs", "active_periods"):
        query = f"SELECT 1 FROM metrics.{table} WHERE customer_id = $1"
        await _until(partial(db.fetchval, query, customer), f"metrics.{table}")
    await _until(
        lambda: db.fetchval(
            "SELECT 1 FROM metrics.funnel_daily WHERE journey_id = $1 AND metric = 'failed'",
            f"welcome-{tag}",
        ),
        "the failure in the funnel",
    )
    runs = await clients["journey"].get(f"/v1/customers/{customer}/runs", headers=ADMIN)
    assert runs.status_code == 200 and len(runs.json()["runs"]) == 2, runs.text
    deliveries = await db.fetch(
        "SELECT dispatch_id, status FROM dispatcher.deliveries WHERE customer_id = $1", customer
    )
    assert sorted(r["status"] for r in deliveries) == ["deferred", "deferred", "failed", "sent"]
    return {
        "runs": [r["run_id"] for r in runs.json()["runs"]],
        "deliveries": [r["dispatch_id"] for r in deliveries],
        "deferred": [r["dispatch_id"] for r in deliveries if r["status"] == "deferred"],
    }


async def _erase(
    clients: dict[str, httpx.AsyncClient],
    db: asyncpg.Connection,
    customer: str,
    suppress: bool,
    held: dict[str, list[str]],
) -> None:
    tag = customer.removeprefix("cust-")
    erased = await clients["segmenter"].delete(
        f"/v1/profiles/{customer}", headers=ADMIN, params={"suppress": str(suppress).lower()}
    )
    assert erased.status_code == 200, erased.text
    await _until(
        lambda: db.fetchval("SELECT 1 FROM metrics.erasures WHERE customer_id = $1", customer),
        "metrics logged the erasure",
    )
    for schema in ("journey", "dispatcher"):
        query = f"SELECT deleted FROM {schema}.profiles WHERE customer_id = $1"
        await _until(partial(db.fetchval, query, customer), f"{schema}'s tombstone")
    # the pending work: both deferred deliveries end suppressed (erased), with outcomes
    deferred = held["deferred"]
    await _until(
        lambda: db.fetchval(
            "SELECT count(*) = 2 FROM dispatcher.outcomes WHERE dispatch_id = ANY($1::text[]) "
            "AND status = 'suppressed' AND reason = 'erased'",
            deferred,
        ),
        "the deferred deliveries' final outcomes",
    )
    statuses = await db.fetch(
        "SELECT status, reason FROM dispatcher.deliveries WHERE dispatch_id = ANY($1::text[])",
        deferred,
    )
    assert [tuple(r) for r in statuses] == [("suppressed", "erased")] * 2
    assert (
        await db.fetchval(
            "SELECT count(*) FROM dispatcher.deferrals WHERE dispatch_id = ANY($1::text[])",
            deferred,
        )
        == 0
    )
    # the waiting run ended (erased), its timer gone; the completed one stays completed
    runs = held["runs"]
    assert (
        await db.fetchval(
            "SELECT count(*) FROM journey.run_timers WHERE run_id = ANY($1::text[])", runs
        )
        == 0
    )
    exits = await db.fetch(
        "SELECT journey_id, exit_reason, customer_id LIKE 'erased-%' FROM journey.runs "
        "WHERE run_id = ANY($1::text[]) ORDER BY journey_id",
        runs,
    )
    assert [tuple(r) for r in exits] == [
        (f"nurture-{tag}", "erased", True),
        (f"welcome-{tag}", "completed", True),
    ]
    # metrics counted the run's cancelled delivery, by code, and the failure by code
    await _until(
        lambda: db.fetchval(
            "SELECT sum(count) = 1 FROM metrics.funnel_daily "
            "WHERE journey_id = $1 AND metric = 'suppressed' AND reason = 'erased'",
            f"nurture-{tag}",
        ),
        "metrics counted the cancellation",
    )
    reasons = await db.fetch(
        "SELECT DISTINCT reason FROM metrics.funnel_daily WHERE journey_id = $1 "
        "AND metric = 'failed'",
        f"welcome-{tag}",
    )
    assert [r["reason"] for r in reasons] == ["provider_error"]
    # the deliveries stay (caps, counts), under a pseudonym
    assert (
        await db.fetchval(
            "SELECT count(*) FROM dispatcher.deliveries WHERE dispatch_id = ANY($1::text[]) "
            "AND customer_id LIKE 'erased-%'",
            held["deliveries"],
        )
        == 4
    )
    # every outbox relayed (what is in flight is in no table once relayed)
    for schema in ("segmenter", "journey", "dispatcher", "metrics"):
        query = f"SELECT count(*) = 0 FROM {schema}.outbox"
        await _until(partial(db.fetchval, query), f"{schema}'s outbox relayed")
    answer = await clients["journey"].get(f"/v1/customers/{customer}/runs", headers=ADMIN)
    assert answer.status_code == 200 and answer.json()["runs"] == [], answer.text


async def _search(db: asyncpg.Connection, needles: dict[str, str]) -> list[str]:
    """Every column that can hold text, in every table of every schema: where each
    needle occurs, apart from the tombstones."""
    columns = await db.fetch(
        """
        SELECT c.table_schema, c.table_name, c.column_name, c.data_type
        FROM information_schema.columns c
        JOIN information_schema.tables t
          ON t.table_schema = c.table_schema AND t.table_name = c.table_name
        WHERE t.table_type = 'BASE TABLE'
          AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
          AND (c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb',
                               'bytea', 'ARRAY', 'USER-DEFINED'))
        ORDER BY 1, 2, 3
        """
    )
    assert {r["table_schema"] for r in columns} >= {"segmenter", "journey", "dispatcher", "metrics"}
    found: list[str] = []
    for schema, table, column, data_type in columns:
        value = f'"{column}"::text' if data_type != "bytea" else f"encode(\"{column}\", 'escape')"
        for what, needle in needles.items():
            hits = await db.fetchval(
                f'SELECT count(*) FROM "{schema}"."{table}" WHERE {value} ILIKE $1',
                f"%{needle}%",
            )
            if hits and table == "outbox_relayed" and what == "customer id":
                # the relay's kept copies (the replay window): the erasure dropped the
                # customer's messages; what its own messages name is checked apart
                found += await _erasure_messages_only(db, schema, needle)
            elif hits and (schema, table, column) not in TOMBSTONES:
                found.append(f"{schema}.{table}.{column}: {hits} row(s) with the {what}")
            elif hits and what != "customer id":
                found.append(f"{schema}.{table}.{column} (a tombstone) holds the {what}")
    return found


async def _erasure_messages_only(db: asyncpg.Connection, schema: str, customer: str) -> list[str]:
    """The messages kept for a replay (``outbox_relayed``) that still name the erased
    customer are the ones the erasure emitted, published after it dropped the others:
    the profile tombstone, the memberships it ended, the runs it stopped and the
    deliveries it cancelled. Replaying them replays the erasure. Nothing else of the
    customer may be there."""
    wrong: list[str] = []
    rows = await db.fetch(
        f"SELECT topic, key, value, packed, headers FROM {schema}.outbox_relayed "
        "WHERE position(convert_to($1, 'UTF8') IN value) > 0",
        customer,
    )
    for row in rows:
        messages = (
            unpack(row["topic"], row["value"])
            if row["packed"]
            else [Message(row["topic"], row["key"], row["value"])]
        )
        for message in messages:
            if customer.encode() not in message.value:
                continue
            body = orjson.loads(message.value)
            if not _emitted_by_the_erasure(message.topic, body):
                wrong.append(f"{schema}.outbox_relayed keeps {message.topic} {body}")
    return wrong


def _emitted_by_the_erasure(topic: str, body: dict[str, Any]) -> bool:
    if topic == "profiles":
        return body["deleted"] is True and not body["traits"] and not body["computed"]
    if topic == "segment.changes":
        return bool(body["change"] == "exited" and body["cause"] == "customer_deleted")
    if topic == "journey.runs":
        return bool(body["kind"] == "exited" and body["exitReason"] == "erased")
    if topic == "dispatch.outcomes":
        return bool(body["status"] == "suppressed" and body["reason"] == "erased")
    return False


async def _tombstone_only(db: asyncpg.Connection, customer: str, suppress: bool) -> list[str]:
    """The tombstone rows hold the id, a version, ``deleted``, times and the stream
    position it was folded to (an offset in customer.events, not personal): nothing else."""
    wrong: list[str] = []
    for schema in ("journey", "dispatcher"):
        row = await db.fetchrow(f"SELECT * FROM {schema}.profiles WHERE customer_id = $1", customer)
        assert row is not None
        kept = {
            k: v
            for k, v in dict(row).items()
            if k
            not in (
                "customer_id",
                "version",
                "deleted",
                "updated_at",
                "folded_partition",
                "folded_offset",
            )
            and v not in (None, "{}", {})
        }
        if not row["deleted"] or kept:
            wrong.append(f"{schema}.profiles keeps {kept} (deleted={row['deleted']})")
    erasure = await db.fetchrow("SELECT * FROM metrics.erasures WHERE customer_id = $1", customer)
    assert erasure is not None and set(dict(erasure)) == {"customer_id", "erased_at"}
    suppressed = await db.fetchrow(
        "SELECT * FROM segmenter.suppressions WHERE customer_id = $1", customer
    )
    if suppress:
        assert suppressed is not None and suppressed["reason"] == "erased"
        assert set(dict(suppressed)) == {"customer_id", "suppressed_at", "reason"}
    else:
        assert suppressed is None
    return wrong


async def _dump(db: asyncpg.Connection) -> None:
    """What the services hold, printed when a wait fails."""
    for query in (
        "SELECT dispatch_id, customer_id, status, reason, request::text FROM dispatcher.deliveries",
        "SELECT dispatch_id, status, reason FROM dispatcher.outcomes",
        "SELECT run_id, journey_id, customer_id, status, exit_reason, step_id FROM journey.runs",
        "SELECT customer_id, deleted FROM journey.profiles",
    ):
        print(query)
        for row in await db.fetch(query):
            print("   ", tuple(row))


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
