"""Reads and writes of the dispatcher's tables, many rows at a time, within the
caller's transaction. Statements on the event path run on the asyncpg connection
(:func:`~shared.db.engine.driver_connection`) with whole columns as arrays."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.dispatcher.contacts import Contact
from services.dispatcher.models import (
    deferrals,
    deliveries,
    engagement_hours,
    outbox_relayed,
    outcomes,
    policy,
    preferences,
    profiles,
    subscription_topics,
    template_versions,
    templates,
)
from services.dispatcher.offers.tables import coupons
from services.dispatcher.policy import Preferences, SendPolicy, Sent
from services.dispatcher.templates import TemplateDefinition
from shared.db.driver import columns_of
from shared.db.engine import driver_connection
from shared.db.outbox_erasure import forget_in_relayed
from shared.db.profile_projection import load_profiles
from shared.db.timers import cancel as cancel_timers
from shared.erasure import pseudonym, pseudonymise_sql
from shared.events.channels import Channel
from shared.events.dispatch_outcomes import DispatchOutcome, Reason, Status
from shared.events.dispatch_requests import DispatchRequest

# --- deliveries ----------------------------------------------------------------------


async def claim_new(
    conn: AsyncConnection, *, requests: Sequence[DispatchRequest], now: datetime
) -> list[DispatchRequest]:
    """Insert a delivery row per request not held yet; return those (the others were
    consumed before: a redelivery, a duplicate publication)."""
    unique = list({r.dispatch_id: r for r in reversed(requests)}.values())[::-1]
    if not unique:
        return []
    driver = await driver_connection(conn)
    rows = await driver.fetch(
        f"""
        INSERT INTO {deliveries.fullname} (dispatch_id, customer_id, status, template_id,
            template_version, priority, request, created_at, updated_at)
        SELECT d, c, 'pending', t, v, p, r::jsonb, $8, $8
        FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::smallint[], $6::text[],
                    $7::int[]) AS u(d, c, t, v, p, r, position)
        ORDER BY position
        ON CONFLICT (dispatch_id) DO NOTHING
        RETURNING dispatch_id
        """,
        *columns_of(unique, "dispatch_id", "customer_id", "template_id", "template_version"),
        [r.priority.rank for r in unique],
        [r.to_bytes().decode() for r in unique],
        list(range(len(unique))),
        now,
    )
    fresh = {row["dispatch_id"] for row in rows}
    return [r for r in unique if r.dispatch_id in fresh]


def read_request(stored: str | bytes) -> DispatchRequest:
    """A delivery's request as stored (``request::text``): the one way it is read back.
    It was written as published (:meth:`~shared.events.base.EventModel.to_bytes`)."""
    return DispatchRequest.model_validate_json(stored)


@dataclass(frozen=True, slots=True)
class HeldRequest:
    """A delivery waiting for its deferral to end."""

    request: DispatchRequest
    not_before: datetime | None
    #: the template version decided on arrival (a deferral sends what it would have)
    template_version: int | None = None
    #: when the request arrived (``None``: now), the clock of a freshness wait
    arrived_at: datetime | None = None


async def deferred_requests(
    conn: AsyncConnection, *, dispatch_ids: Sequence[str]
) -> list[HeldRequest]:
    """The requests of these deliveries that are still deferred, locked for the caller."""
    driver = await driver_connection(conn)
    rows = await driver.fetch(
        f"SELECT request::text AS request, not_before, template_version, created_at "
        f"FROM {deliveries.fullname} "
        "WHERE dispatch_id = ANY($1::text[]) AND status = 'deferred' "
        "ORDER BY dispatch_id FOR UPDATE",
        list(dispatch_ids),
    )
    return [
        HeldRequest(
            read_request(row["request"]),
            row["not_before"],
            row["template_version"],
            row["created_at"],
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class DeliveryUpdate:
    dispatch_id: str
    status: str
    channel: str | None = None
    template_version: int | None = None
    reason: str | None = None
    not_before: datetime | None = None
    deferred_until: datetime | None = None
    sent_at: datetime | None = None
    provider_message_id: str | None = None
    attempts: int = 0


async def update_deliveries(
    conn: AsyncConnection,
    *,
    updates: Sequence[DeliveryUpdate],
    now: datetime,
    only_from: Sequence[str],
) -> set[str]:
    """Set each delivery's new state, only where its status is one of ``only_from``
    (a ``sending`` delivery leaves ``sending`` once: a send recorded late, after the
    lease gave it an ``interrupted`` failure, changes nothing); return the ids changed.
    ``None`` leaves a column as it was (``sent_at``, ``not_before``,
    ``template_version``, ``provider_message_id``)."""
    if not updates:
        return set()
    driver = await driver_connection(conn)
    rows = await driver.fetch(
        f"""
        UPDATE {deliveries.fullname} AS d SET
            status = u.status,
            channel = coalesce(u.channel, d.channel),
            template_version = coalesce(u.template_version, d.template_version),
            reason = u.reason,
            not_before = coalesce(u.not_before, d.not_before),
            deferred_until = u.deferred_until,
            sent_at = coalesce(u.sent_at, d.sent_at),
            provider_message_id = coalesce(u.provider_message_id, d.provider_message_id),
            attempts = d.attempts + u.attempts,
            updated_at = $11
        FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[],
                    $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::text[],
                    $10::int[])
            AS u(dispatch_id, status, channel, template_version, reason, not_before,
                 deferred_until, sent_at, provider_message_id, attempts)
        WHERE d.dispatch_id = u.dispatch_id AND d.status = ANY($12::text[])
        RETURNING d.dispatch_id
        """,
        *columns_of(
            updates,
            "dispatch_id",
            "status",
            "channel",
            "template_version",
            "reason",
            "not_before",
            "deferred_until",
            "sent_at",
            "provider_message_id",
            "attempts",
        ),
        now,
        list(only_from),
    )
    return {row["dispatch_id"] for row in rows}


async def cancel_pending(
    conn: AsyncConnection, *, customer_ids: Iterable[str], now: datetime
) -> list[DispatchRequest]:
    """An erased customer's deliveries not sent yet (``pending``, ``deferred``) end
    ``suppressed`` (``erased``), their deferral timers deleted; returns their requests,
    for the caller to give each its final outcome. One being sent (``sending``) is
    the provider's already: it ends as its send does."""
    ids = list(dict.fromkeys(customer_ids))
    if not ids:
        return []
    driver = await driver_connection(conn)
    rows = await driver.fetch(
        f"UPDATE {deliveries.fullname} SET status = 'suppressed', reason = $2, "
        "deferred_until = NULL, updated_at = $3 "
        "WHERE customer_id = ANY($1::text[]) AND status IN ('pending', 'deferred') "
        "RETURNING dispatch_id, request::text AS request",
        ids,
        Reason.ERASED.value,
        now,
    )
    await cancel_timers(conn, table=deferrals, keys=[row["dispatch_id"] for row in rows])
    return [read_request(row["request"]) for row in rows if row["request"] is not None]


async def erase_customers(conn: AsyncConnection, *, customer_ids: Iterable[str]) -> None:
    """Remove or scrub what the dispatcher holds about erased customers (see
    :mod:`shared.erasure`): preferences and engagement hours are deleted; deliveries,
    outcomes and issued coupons stay for counts and caps, under a pseudonym (one per
    customer), with the request's context dropped and free-text reasons (a provider's
    answer may quote the address) cut to their code. Idempotent; the profile tombstone
    is the only row left that holds the id."""
    ids = list(dict.fromkeys(customer_ids))
    if not ids:
        return
    names = [pseudonym() for _ in ids]
    codes = [r.value for r in Reason]
    await forget_in_relayed(conn, outbox_relayed, customer_ids=ids)
    driver = await driver_connection(conn)
    reason = (
        "CASE WHEN t.reason IS NULL THEN NULL "
        "WHEN btrim(split_part(t.reason, ':', 1)) = ANY($3::text[]) "
        "THEN btrim(split_part(t.reason, ':', 1)) ELSE 'other' END"
    )
    request = (
        "CASE WHEN t.request IS NULL THEN NULL ELSE "
        "jsonb_set(t.request - 'context', '{customerId}', to_jsonb(p.pseudonym)) "
        """|| '{"context": {}}'::jsonb END"""
    )
    also = f", request = {request}, reason = {reason}"
    await driver.execute(pseudonymise_sql(deliveries.fullname, also=also), ids, names, codes)
    also = f", reason = {reason}"
    await driver.execute(pseudonymise_sql(outcomes.fullname, also=also), ids, names, codes)
    await driver.execute(pseudonymise_sql(coupons.fullname), ids, names)
    await driver.execute(
        f"DELETE FROM {preferences.fullname} WHERE customer_id = ANY($1::text[])", ids
    )
    await driver.execute(
        f"DELETE FROM {engagement_hours.fullname} WHERE customer_id = ANY($1::text[])", ids
    )


async def stale_sending(
    conn: AsyncConnection, *, older_than: datetime, limit: int = 1_000
) -> list[tuple[str, DispatchRequest]]:
    """Deliveries claimed for sending but never recorded (the process died meanwhile)."""
    driver = await driver_connection(conn)
    rows = await driver.fetch(
        f"SELECT dispatch_id, request::text AS request FROM {deliveries.fullname} "
        "WHERE status = 'sending' AND updated_at < $1 "
        "ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        older_than,
        limit,
    )
    return [(row["dispatch_id"], read_request(row["request"])) for row in rows]


@dataclass(frozen=True, slots=True)
class FinalOutcome:
    """A delivery's final outcome as stored, to publish it again."""

    dispatch_id: str
    status: Status
    reason: str | None
    channel: Channel | None
    at: datetime
    provider_message_id: str | None
    template_version: int | None


async def final_outcomes(
    conn: AsyncConnection, *, dispatch_ids: Sequence[str]
) -> list[FinalOutcome]:
    """The final outcome (sent, suppressed, failed) of each of these deliveries that has
    one."""
    if not dispatch_ids:
        return []
    driver = await driver_connection(conn)
    rows = await driver.fetch(
        f"SELECT o.dispatch_id, o.status, o.reason, o.channel, o.at, o.provider_message_id, "
        f"d.template_version FROM {outcomes.fullname} AS o "
        f"JOIN {deliveries.fullname} AS d ON d.dispatch_id = o.dispatch_id "
        "WHERE o.dispatch_id = ANY($1::text[]) AND o.status = ANY($2::text[]) "
        "ORDER BY o.dispatch_id",
        list(dispatch_ids),
        [s.value for s in Status if s.is_final_decision],
    )
    return [
        FinalOutcome(
            row["dispatch_id"],
            Status(row["status"]),
            row["reason"],
            Channel(row["channel"]) if row["channel"] else None,
            row["at"],
            row["provider_message_id"],
            row["template_version"],
        )
        for row in rows
    ]


async def wake_profile_waits(
    conn: AsyncConnection, *, customer_ids: Sequence[str], now: datetime
) -> None:
    """Make the ``profile_behind`` deferrals of these customers due now."""
    if not customer_ids:
        return
    driver = await driver_connection(conn)
    await driver.execute(
        f"UPDATE {deferrals.fullname} AS f SET due_at = $2 FROM {deliveries.fullname} AS d "
        "WHERE d.customer_id = ANY($1::text[]) AND d.status = 'deferred' "
        "AND d.reason = $3 AND f.dispatch_id = d.dispatch_id AND f.due_at > $2",
        list(customer_ids),
        now,
        Reason.PROFILE_BEHIND.value,
    )


# --- what a decision reads ----------------------------------------------------------


async def load_contacts(conn: AsyncConnection, *, ids: Iterable[str]) -> dict[str, Contact]:
    """Contacts by customer id; an erased customer is a tombstone contact."""
    wanted = list(dict.fromkeys(ids))
    found = await load_profiles(conn, table=profiles, ids=wanted)
    contacts = {
        cid: Contact(
            customer_id=cid,
            email=p.email,
            phone=p.phone,
            timezone=p.timezone,
            locale=p.locale,
            traits=p.traits,
            churn_risk=p.computed.get("churn_risk"),
            predicted_ltv=p.computed.get("predicted_ltv"),
            rfm_tier=p.computed.get("rfm_tier"),
            loyalty_tier=p.computed.get("loyalty_tier"),
            loyalty_points=p.computed.get("loyalty_points"),
            recommendations=tuple(p.computed.get("recommendations") or ()),
        )
        for cid, p in found.items()
    }
    missing = [cid for cid in wanted if cid not in contacts]
    if missing:
        driver = await driver_connection(conn)
        rows = await driver.fetch(
            f"SELECT customer_id FROM {profiles.fullname} "
            "WHERE customer_id = ANY($1::text[]) AND deleted",
            missing,
        )
        for row in rows:
            contacts[row["customer_id"]] = Contact(row["customer_id"], erased=True)
    return contacts


async def load_preferences(conn: AsyncConnection, *, ids: Iterable[str]) -> dict[str, Preferences]:
    driver = await driver_connection(conn)
    rows = await driver.fetch(
        f"SELECT customer_id, unsubscribed, channels::text AS channels, topics::text AS topics "
        f"FROM {preferences.fullname} WHERE customer_id = ANY($1::text[])",
        list(dict.fromkeys(ids)),
    )
    return {
        row["customer_id"]: Preferences(
            unsubscribed=row["unsubscribed"],
            channels=orjson.loads(row["channels"]),
            topics=orjson.loads(row["topics"]),
        )
        for row in rows
    }


async def recent_sends(
    conn: AsyncConnection, *, ids: Iterable[str], since: datetime
) -> dict[str, list[Sent]]:
    driver = await driver_connection(conn)
    rows = await driver.fetch(
        f"SELECT customer_id, channel, sent_at FROM {deliveries.fullname} "
        "WHERE customer_id = ANY($1::text[]) AND sent_at > $2 "
        "AND status IN ('sending', 'sent')",
        list(dict.fromkeys(ids)),
        since,
    )
    found: dict[str, list[Sent]] = defaultdict(list)
    for row in rows:
        found[row["customer_id"]].append(Sent(Channel(row["channel"]), row["sent_at"]))
    return found


async def load_engagement(
    conn: AsyncConnection, *, ids: Iterable[str]
) -> dict[str, dict[int, int]]:
    driver = await driver_connection(conn)
    rows = await driver.fetch(
        f"SELECT customer_id, hour, count FROM {engagement_hours.fullname} "
        "WHERE customer_id = ANY($1::text[])",
        list(dict.fromkeys(ids)),
    )
    found: dict[str, dict[int, int]] = defaultdict(dict)
    for row in rows:
        found[row["customer_id"]][row["hour"]] = row["count"]
    return found


async def add_engagement(conn: AsyncConnection, *, customer_id: str, hour: int) -> None:
    driver = await driver_connection(conn)
    await driver.execute(
        f"INSERT INTO {engagement_hours.fullname} (customer_id, hour, count) VALUES ($1, $2, 1) "
        "ON CONFLICT (customer_id, hour) DO UPDATE SET count = "
        f"{engagement_hours.name}.count + 1",
        customer_id,
        hour,
    )


async def topic_defaults(conn: AsyncConnection) -> dict[str, bool]:
    rows = await conn.execute(
        select(subscription_topics.c.topic, subscription_topics.c.default_subscribed)
    )
    return {str(topic): bool(default) for topic, default in rows.all()}


async def load_policy(conn: AsyncConnection) -> SendPolicy:
    document = await conn.scalar(select(policy.c.document).where(policy.c.id == 1))
    return SendPolicy() if document is None else SendPolicy.model_validate(document)


async def save_policy(conn: AsyncConnection, *, document: SendPolicy, now: datetime) -> None:
    from sqlalchemy.dialects.postgresql import insert

    values = {"id": 1, "document": document.model_dump(mode="json"), "updated_at": now}
    await conn.execute(
        insert(policy).values(values).on_conflict_do_update(index_elements=["id"], set_=values)
    )


# --- templates ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TemplateHead:
    template_id: str
    latest_version: int
    archived: bool


async def template_heads(conn: AsyncConnection, *, ids: Iterable[str]) -> dict[str, TemplateHead]:
    driver = await driver_connection(conn)
    rows = await driver.fetch(
        f"SELECT template_id, latest_version, archived FROM {templates.fullname} "
        "WHERE template_id = ANY($1::text[])",
        list(dict.fromkeys(ids)),
    )
    return {
        row["template_id"]: TemplateHead(row["template_id"], row["latest_version"], row["archived"])
        for row in rows
    }


async def template_definitions(
    conn: AsyncConnection, *, keys: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], TemplateDefinition]:
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    driver = await driver_connection(conn)
    rows = await driver.fetch(
        f"SELECT v.template_id, v.version, v.definition::text AS definition "
        f"FROM {template_versions.fullname} AS v "
        "JOIN unnest($1::text[], $2::int[]) AS k(template_id, version) "
        "ON v.template_id = k.template_id AND v.version = k.version",
        [k[0] for k in wanted],
        [k[1] for k in wanted],
    )
    return {
        (row["template_id"], row["version"]): TemplateDefinition.model_validate_json(
            row["definition"]
        )
        for row in rows
    }


# --- outcomes -------------------------------------------------------------------------


async def insert_outcomes(conn: AsyncConnection, *, rows: Sequence[DispatchOutcome]) -> None:
    if not rows:
        return
    driver = await driver_connection(conn)
    await driver.execute(
        f"""
        INSERT INTO {outcomes.fullname} (outcome_id, dispatch_id, customer_id, status, reason,
            channel, at, deferred_until, provider_message_id)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
            $6::text[], $7::timestamptz[], $8::timestamptz[], $9::text[])
        ON CONFLICT (outcome_id) DO NOTHING
        """,
        *columns_of(rows, "outcome_id", "dispatch_id", "customer_id"),
        [o.status.value for o in rows],
        [o.reason for o in rows],
        [o.channel.value if o.channel else None for o in rows],
        *columns_of(rows, "at", "deferred_until", "provider_message_id"),
    )


async def set_preferences(
    conn: AsyncConnection,
    *,
    customer_id: str,
    now: datetime,
    unsubscribed: bool | None = None,
    channels: dict[str, bool] | None = None,
    topics: dict[str, bool] | None = None,
) -> None:
    """Merge choices into the customer's preferences (``None``: unchanged)."""
    from sqlalchemy.dialects.postgresql import insert

    values = {
        "customer_id": customer_id,
        "unsubscribed": bool(unsubscribed),
        "channels": channels or {},
        "topics": topics or {},
        "updated_at": now,
    }
    statement = insert(preferences).values(values)
    excluded = statement.excluded
    sets: dict[str, Any] = {"updated_at": now}
    if unsubscribed is not None:
        sets["unsubscribed"] = excluded.unsubscribed
    if channels:
        sets["channels"] = preferences.c.channels.op("||")(excluded.channels)
    if topics:
        sets["topics"] = preferences.c.topics.op("||")(excluded.topics)
    await conn.execute(statement.on_conflict_do_update(index_elements=["customer_id"], set_=sets))


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def preferences_row(found: Mapping[str, Any] | None) -> Preferences:
    if found is None:
        return Preferences()
    return Preferences(
        unsubscribed=found["unsubscribed"], channels=found["channels"], topics=found["topics"]
    )
