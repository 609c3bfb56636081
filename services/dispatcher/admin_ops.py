"""What the admin API reads and writes, each operation one transaction (or one
snapshot): templates and their versions, subscription topics, a customer's
preferences and deliveries. Routes call these and raise nothing of their own but
validation; a missing or taken key raises the shared ``NotFound`` / ``Conflict``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Text, and_, cast, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.dispatcher import repository as repo
from services.dispatcher.models import (
    deliveries,
    outcomes,
    subscription_topics,
    template_versions,
    templates,
)
from services.dispatcher.schemas import (
    DeliveryPublic,
    OutcomePublic,
    PreferencesPublic,
    TemplatePublic,
    TopicCreate,
    TopicPublic,
)
from services.dispatcher.templates import TemplateDefinition
from shared.http.problems import Conflict, NotFound

# --- templates -------------------------------------------------------------------------


async def create_template(
    engine: AsyncEngine, *, template_id: str, definition: TemplateDefinition, now: datetime
) -> None:
    async with engine.begin() as conn:
        created = await conn.execute(
            insert(templates)
            .values(template_id=template_id, latest_version=1, created_at=now, updated_at=now)
            .on_conflict_do_nothing()
            .returning(templates.c.template_id)
        )
        if created.first() is None:
            raise Conflict(f"template {template_id!r} already exists")
        await _insert_version(conn, template_id, 1, definition, now)


async def add_template_version(
    engine: AsyncEngine, *, template_id: str, definition: TemplateDefinition, now: datetime
) -> int:
    """Save a new version (un-archiving the template); returns its number."""
    async with engine.begin() as conn:
        version = await conn.scalar(
            update(templates)
            .where(templates.c.template_id == template_id)
            .values(latest_version=templates.c.latest_version + 1, archived=False, updated_at=now)
            .returning(templates.c.latest_version)
        )
        if version is None:
            raise NotFound(f"no template {template_id!r}")
        await _insert_version(conn, template_id, version, definition, now)
    return int(version)


async def _insert_version(
    conn: AsyncConnection,
    template_id: str,
    version: int,
    definition: TemplateDefinition,
    now: datetime,
) -> None:
    await conn.execute(
        insert(template_versions).values(
            template_id=template_id,
            version=version,
            definition=definition.model_dump(mode="json", exclude_defaults=True),
            created_at=now,
        )
    )


async def template_ids(
    engine: AsyncEngine, *, after: str | None = None, limit: int | None = None
) -> list[str]:
    """Template ids in order: every one, or a page of ``limit`` after ``after``."""
    query = select(templates.c.template_id)
    if after is not None:
        query = query.where(templates.c.template_id > after)
    async with engine.connect() as conn:
        found = await conn.execute(query.order_by(templates.c.template_id).limit(limit))
        return [str(i) for i in found.scalars().all()]


async def get_template(
    engine: AsyncEngine, *, template_id: str, version: int | None = None
) -> TemplatePublic:
    """A version of the template (the latest by default)."""
    async with engine.connect() as conn:
        head = (
            await conn.execute(select(templates).where(templates.c.template_id == template_id))
        ).first()
        if head is None:
            raise NotFound(f"no template {template_id!r}")
        wanted = version or head.latest_version
        row = (
            await conn.execute(
                select(template_versions).where(
                    template_versions.c.template_id == template_id,
                    template_versions.c.version == wanted,
                )
            )
        ).first()
    if row is None:
        raise NotFound(f"no version {wanted} of template {template_id!r}")
    return TemplatePublic(
        id=template_id,
        version=row.version,
        latest_version=head.latest_version,
        archived=head.archived,
        definition=TemplateDefinition.model_validate(row.definition),
        created_at=row.created_at,
    )


async def archive_template(engine: AsyncEngine, *, template_id: str) -> None:
    async with engine.begin() as conn:
        done = await conn.scalar(
            update(templates)
            .where(templates.c.template_id == template_id)
            .values(archived=True)
            .returning(templates.c.template_id)
        )
    if done is None:
        raise NotFound(f"no template {template_id!r}")


# --- subscription topics -----------------------------------------------------------------


async def list_topics(engine: AsyncEngine) -> list[TopicPublic]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(subscription_topics).order_by(subscription_topics.c.topic))
        ).all()
    return [
        TopicPublic(
            topic=r.topic,
            name=r.name,
            description=r.description,
            default_subscribed=r.default_subscribed,
        )
        for r in rows
    ]


async def put_topic(engine: AsyncEngine, *, topic: str, body: TopicCreate) -> TopicPublic:
    values = body.model_dump()
    async with engine.begin() as conn:
        await conn.execute(
            insert(subscription_topics)
            .values(topic=topic, **values)
            .on_conflict_do_update(index_elements=["topic"], set_=values)
        )
    return TopicPublic(topic=topic, **values)


# --- preferences ---------------------------------------------------------------------------


async def get_preferences(engine: AsyncEngine, *, customer_id: str) -> PreferencesPublic:
    async with engine.connect() as conn:
        found = (await repo.load_preferences(conn, ids=[customer_id])).get(customer_id)
    prefs = found or repo.preferences_row(None)
    return PreferencesPublic(
        customer_id=customer_id,
        unsubscribed=prefs.unsubscribed,
        channels=dict(prefs.channels),
        topics=dict(prefs.topics),
    )


async def update_preferences(
    engine: AsyncEngine,
    *,
    customer_id: str,
    now: datetime,
    unsubscribed: bool | None,
    channels: dict[str, bool] | None,
    topics: dict[str, bool] | None,
) -> None:
    async with engine.begin() as conn:
        await repo.set_preferences(
            conn,
            customer_id=customer_id,
            now=now,
            unsubscribed=unsubscribed,
            channels=channels,
            topics=topics,
        )


# --- deliveries ----------------------------------------------------------------------------


async def customer_deliveries(
    engine: AsyncEngine, *, customer_id: str, limit: int, after: str | None = None
) -> list[DeliveryPublic]:
    """The customer's latest deliveries, newest first, each with its outcomes;
    ``after``: the last dispatch id of the previous page (the next page is older)."""
    query = select(
        *(c for c in deliveries.c if c.name != "request"),
        cast(deliveries.c.request, Text).label("request"),
    ).where(deliveries.c.customer_id == customer_id)
    if after is not None:
        cursor = (
            select(deliveries.c.created_at)
            .where(deliveries.c.dispatch_id == after, deliveries.c.customer_id == customer_id)
            .scalar_subquery()
        )
        query = query.where(
            or_(
                deliveries.c.created_at < cursor,
                and_(deliveries.c.created_at == cursor, deliveries.c.dispatch_id > after),
            )
        )
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                query.order_by(deliveries.c.created_at.desc(), deliveries.c.dispatch_id).limit(
                    limit
                )
            )
        ).all()
        found = (
            await conn.execute(
                select(outcomes)
                .where(outcomes.c.dispatch_id.in_([r.dispatch_id for r in rows]))
                .order_by(outcomes.c.at, outcomes.c.seq)
            )
        ).all()
    by_dispatch: dict[str, list[OutcomePublic]] = {}
    for o in found:
        by_dispatch.setdefault(o.dispatch_id, []).append(
            OutcomePublic.model_validate(o, from_attributes=True)
        )
    answer = []
    for r in rows:
        request = repo.read_request(r.request) if r.request is not None else None
        answer.append(
            DeliveryPublic(
                dispatch_id=r.dispatch_id,
                customer_id=r.customer_id,
                status=r.status,
                channel=r.channel,
                template_id=r.template_id,
                template_version=r.template_version,
                reason=r.reason,
                deferred_until=r.deferred_until,
                sent_at=r.sent_at,
                attempts=r.attempts,
                created_at=r.created_at,
                journey_id=request.journey_id if request else None,
                step_id=request.step_id if request else None,
                outcomes=by_dispatch.get(r.dispatch_id, []),
            )
        )
    return answer
