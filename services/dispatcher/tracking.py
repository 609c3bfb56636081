"""What the public tracking endpoints (:mod:`services.dispatcher.api.tracking`) and the
email feedback record, each in one transaction: engagement events on
``customer.events`` through the outbox, with the message's attribution (dispatch,
journey, step, run, variant, channel, template); preference changes; bounce outcomes.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.dispatcher import repository as repo
from services.dispatcher.messages import attribution, engagement_event, outcome_message
from services.dispatcher.models import deliveries, outbox, subscription_topics
from services.dispatcher.policy import Preferences
from services.dispatcher.schemas import FeedbackCreate
from shared.db.outbox import enqueue
from shared.events import engagement
from shared.events.channels import Channel
from shared.events.dispatch_outcomes import DispatchOutcome, Reason, Status
from shared.events.dispatch_requests import DispatchRequest
from shared.http.problems import NotFound


@dataclass(frozen=True, slots=True)
class Delivery:
    """The delivery a link names."""

    dispatch_id: str
    customer_id: str
    channel: str | None
    template_id: str
    request: DispatchRequest | None

    def properties(self, **more: Any) -> dict[str, Any]:
        """An engagement event's properties: the message's attribution and ``more``."""
        return {**attribution(self.request, self.channel, self.template_id), **more}


async def load_delivery(conn: AsyncConnection, dispatch_id: str) -> Delivery:
    row = (
        await conn.execute(
            select(
                deliveries.c.customer_id,
                deliveries.c.channel,
                deliveries.c.template_id,
                cast(deliveries.c.request, Text).label("request"),
            ).where(deliveries.c.dispatch_id == dispatch_id)
        )
    ).first()
    if row is None:
        raise NotFound("this message is not known (any more)")
    request = repo.read_request(row.request) if row.request is not None else None
    return Delivery(dispatch_id, row.customer_id, row.channel, row.template_id, request)


async def _record(
    conn: AsyncConnection,
    found: Delivery,
    event: str,
    properties: Mapping[str, Any],
    *,
    now: datetime,
    client: Mapping[str, Any],
    message_id: str | None = None,
) -> None:
    """Queue the customer's engagement event about the delivery (``client``: the request's
    context)."""
    await enqueue(
        session=conn,
        outbox=outbox,
        messages=[
            engagement_event(
                customer_id=found.customer_id,
                event=event,
                properties=properties,
                at=now,
                message_id=message_id,
                context=client,
            )
        ],
    )


async def track(
    engine: AsyncEngine,
    *,
    dispatch_id: str,
    event: str,
    now: datetime,
    client: Mapping[str, Any],
    learn_hour: bool = False,
    message_id: str | None = None,
    properties: Mapping[str, Any] | None = None,
) -> str:
    """Record an engagement event of the delivery; returns the event's name (a click on
    another channel than email is ``Message Link Clicked``). Nothing is recorded about
    an erased customer any more."""
    async with engine.begin() as conn:
        found = await load_delivery(conn, dispatch_id)
        if event == engagement.EMAIL_LINK_CLICKED and found.channel not in (None, "email"):
            event = engagement.MESSAGE_CLICKED
        contact = (await repo.load_contacts(conn, ids=[found.customer_id])).get(found.customer_id)
        if contact is not None and contact.erased:
            return event
        await _record(
            conn,
            found,
            event,
            found.properties(**(properties or {})),
            now=now,
            client=client,
            message_id=message_id,
        )
        if learn_hour:
            await repo.add_engagement(conn, customer_id=found.customer_id, hour=now.hour)
    return event


async def unsubscribe(
    engine: AsyncEngine, *, dispatch_id: str, now: datetime, client: Mapping[str, Any]
) -> str | None:
    """Off the message's subscription topic (returned), or off everything (``None``)
    when the message has none."""
    async with engine.begin() as conn:
        found = await load_delivery(conn, dispatch_id)
        topic = (
            found.request.subscription_topic if found.request else None
        ) or await _template_topic(conn, found.template_id)
        await repo.set_preferences(
            conn,
            customer_id=found.customer_id,
            now=now,
            unsubscribed=None if topic else True,
            topics={topic: False} if topic else None,
        )
        await _record(
            conn,
            found,
            engagement.UNSUBSCRIBED,
            found.properties(**({"topic": topic} if topic else {"all": True})),
            now=now,
            client=client,
            message_id=f"tenure-unsubscribe-{dispatch_id}",
        )
    return topic


async def _template_topic(conn: AsyncConnection, template_id: str) -> str | None:
    heads = await repo.template_heads(conn, ids=[template_id])
    head = heads.get(template_id)
    if head is None:
        return None
    found = await repo.template_definitions(conn, keys=[(template_id, head.latest_version)])
    definition = found.get((template_id, head.latest_version))
    return definition.subscription_topic if definition else None


@dataclass(frozen=True, slots=True)
class Choice:
    name: str
    label: str
    checked: bool


async def preference_choices(
    engine: AsyncEngine, *, dispatch_id: str
) -> tuple[bool, list[Choice], list[Choice]]:
    """What the preference page shows: unsubscribed from all, the topics, the channels."""
    async with engine.connect() as conn:
        found = await load_delivery(conn, dispatch_id)
        prefs = (await repo.load_preferences(conn, ids=[found.customer_id])).get(found.customer_id)
        topics = (
            await conn.execute(
                select(
                    subscription_topics.c.topic,
                    subscription_topics.c.name,
                    subscription_topics.c.default_subscribed,
                ).order_by(subscription_topics.c.topic)
            )
        ).all()
    prefs = prefs or Preferences()
    return (
        prefs.unsubscribed,
        [Choice(t.topic, t.name, prefs.topics.get(t.topic, t.default_subscribed)) for t in topics],
        [Choice(c.value, c.value.title(), prefs.allows(c)) for c in Channel],
    )


async def save_preferences(
    engine: AsyncEngine,
    *,
    dispatch_id: str,
    now: datetime,
    checked: Set[str],
    client: Mapping[str, Any],
) -> None:
    """The preference page's form: ``topic:<id>``, ``channel:<name>`` and ``unsubscribed``
    boxes; an unchecked box is a ``no``."""
    async with engine.begin() as conn:
        found = await load_delivery(conn, dispatch_id)
        known = (await conn.execute(select(subscription_topics.c.topic))).scalars().all()
        unsubscribed = "unsubscribed" in checked
        await repo.set_preferences(
            conn,
            customer_id=found.customer_id,
            now=now,
            unsubscribed=unsubscribed,
            channels={c.value: f"channel:{c.value}" in checked for c in Channel},
            topics={topic: f"topic:{topic}" in checked for topic in known},
        )
        if unsubscribed:
            await _record(
                conn,
                found,
                engagement.UNSUBSCRIBED,
                found.properties(all=True),
                now=now,
                client=client,
            )


async def email_feedback(
    engine: AsyncEngine, *, dispatch_id: str, body: FeedbackCreate, now: datetime
) -> str:
    """A hard bounce turns the customer's email channel off; a complaint unsubscribes
    them; both give an event, and a bounce an outcome ``bounced``. Returns the event."""
    async with engine.begin() as conn:
        found = await load_delivery(conn, dispatch_id)
        request = found.request
        messages = []
        if body.kind == "bounce":
            reason = Reason.HARD_BOUNCE if body.bounce_type == "hard" else Reason.SOFT_BOUNCE
            result = DispatchOutcome(
                outcome_id=f"{dispatch_id}:bounced",
                dispatch_id=dispatch_id,
                customer_id=found.customer_id,
                status=Status.BOUNCED,
                reason=f"{reason}: {body.detail}" if body.detail else reason,
                channel=Channel.EMAIL,
                at=now,
                template_id=found.template_id,
                journey_id=request.journey_id if request else None,
                journey_version=request.journey_version if request else None,
                step_id=request.step_id if request else None,
                run_id=request.run_id if request else None,
                variant=request.variant if request else None,
            )
            await repo.insert_outcomes(conn, rows=[result])
            messages.append(outcome_message(result))
            event = engagement.EMAIL_BOUNCED
            if body.bounce_type == "hard":
                await repo.set_preferences(
                    conn, customer_id=found.customer_id, now=now, channels={"email": False}
                )
        else:
            event = engagement.EMAIL_MARKED_AS_SPAM
            await repo.set_preferences(
                conn, customer_id=found.customer_id, now=now, unsubscribed=True
            )
        messages.append(
            engagement_event(
                customer_id=found.customer_id,
                event=event,
                properties=found.properties(
                    **({"bounceType": body.bounce_type} if body.kind == "bounce" else {})
                ),
                at=now,
                message_id=f"tenure-{body.kind}-{dispatch_id}",
            )
        )
        await enqueue(session=conn, outbox=outbox, messages=messages)
    return event
