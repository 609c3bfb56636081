"""The admin API (``Authorization: Bearer <admin token>``): templates (versioned) and
their preview for a customer, subscription topics, a customer's preferences and
deliveries, the sending policy, and test sends."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from services.dispatcher import repository as repo
from services.dispatcher.models import (
    deliveries,
    outcomes,
    preferences,
    subscription_topics,
    template_versions,
    templates,
)
from services.dispatcher.policy import Action, Decision, SendPolicy
from services.dispatcher.templates import TemplateDefinition, TemplateError, check_compiles
from services.dispatcher.tracking import _set_preferences
from shared.events.channels import Channel
from shared.events.dispatch_requests import DispatchRequest, Priority
from shared.http.admin import require_admin
from shared.http.nul_body import nul_message, nul_path
from shared.validation import SafeModel

router = APIRouter(dependencies=[Depends(require_admin)])


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


#: the largest template version PostgreSQL's ``integer`` holds
MAX_VERSION = 2**31 - 1


class Model(SafeModel):
    """No NUL, lone surrogate, NaN or out-of-range date anywhere (issue 21)."""

    model_config = ConfigDict(extra="forbid")


# --- templates ---------------------------------------------------------------------------


class TemplateCreate(Model):
    #: not only dots (``..`` is a path segment, not an id)
    id: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[\w.-]*[\w-][\w.-]*$"
    )
    definition: TemplateDefinition


class TemplatePublic(Model):
    id: str
    version: int
    latest_version: int
    archived: bool
    definition: TemplateDefinition
    created_at: datetime


def _check(definition: TemplateDefinition) -> None:
    where = nul_path(definition)
    problems = [nul_message(where)] if where is not None else check_compiles(definition)
    if problems:
        raise HTTPException(
            422,
            detail=[
                {"loc": ["body", "definition"], "msg": p, "type": "template_error"}
                for p in problems
            ],
        )


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48]
    return f"{slug or 'template'}-{uuid.uuid4().hex[:6]}"


class Problem(BaseModel):
    """What a 404 or a 409 answers."""

    detail: str


@router.post(
    "/v1/templates",
    status_code=201,
    response_model=TemplatePublic,
    tags=["templates"],
    responses={409: {"description": "a template has this id", "model": Problem}},
)
async def create_template(body: TemplateCreate, request: Request) -> TemplatePublic:
    _check(body.definition)
    template_id = body.id or _slug(body.definition.name)
    runtime = _runtime(request)
    now = runtime.clock()
    async with runtime.engine.begin() as conn:
        created = await conn.execute(
            insert(templates)
            .values(template_id=template_id, latest_version=1, created_at=now, updated_at=now)
            .on_conflict_do_nothing()
            .returning(templates.c.template_id)
        )
        if created.first() is None:
            raise HTTPException(409, detail=f"template {template_id!r} already exists")
        await conn.execute(
            insert(template_versions).values(
                template_id=template_id,
                version=1,
                definition=body.definition.model_dump(mode="json", exclude_defaults=True),
                created_at=now,
            )
        )
    return await get_template(template_id, request)


@router.put("/v1/templates/{template_id}", response_model=TemplatePublic, tags=["templates"])
async def update_template(
    template_id: str, definition: TemplateDefinition, request: Request
) -> TemplatePublic:
    """Save a new version; requests that pinned an older one keep it."""
    _check(definition)
    runtime = _runtime(request)
    now = runtime.clock()
    async with runtime.engine.begin() as conn:
        version = await conn.scalar(
            update(templates)
            .where(templates.c.template_id == template_id)
            .values(latest_version=templates.c.latest_version + 1, archived=False, updated_at=now)
            .returning(templates.c.latest_version)
        )
        if version is None:
            raise HTTPException(404, detail=f"no template {template_id!r}")
        await conn.execute(
            insert(template_versions).values(
                template_id=template_id,
                version=version,
                definition=definition.model_dump(mode="json", exclude_defaults=True),
                created_at=now,
            )
        )
    return await get_template(template_id, request)


@router.get("/v1/templates", response_model=list[TemplatePublic], tags=["templates"])
async def list_templates(request: Request) -> list[TemplatePublic]:
    async with _runtime(request).engine.connect() as conn:
        ids = (
            (await conn.execute(select(templates.c.template_id).order_by(templates.c.template_id)))
            .scalars()
            .all()
        )
    return [await get_template(i, request) for i in ids]


@router.get("/v1/templates/{template_id}", response_model=TemplatePublic, tags=["templates"])
async def get_template(
    template_id: str,
    request: Request,
    version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
) -> TemplatePublic:
    async with _runtime(request).engine.connect() as conn:
        head = (
            await conn.execute(select(templates).where(templates.c.template_id == template_id))
        ).first()
        if head is None:
            raise HTTPException(404, detail=f"no template {template_id!r}")
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
        raise HTTPException(404, detail=f"no version {wanted} of template {template_id!r}")
    return TemplatePublic(
        id=template_id,
        version=row.version,
        latest_version=head.latest_version,
        archived=head.archived,
        definition=TemplateDefinition.model_validate(row.definition),
        created_at=row.created_at,
    )


@router.delete("/v1/templates/{template_id}", status_code=204, tags=["templates"])
async def archive_template(template_id: str, request: Request) -> Response:
    """Archive: requests for its latest version fail (``template_error``); pinned
    versions still render."""
    async with _runtime(request).engine.begin() as conn:
        done = await conn.scalar(
            update(templates)
            .where(templates.c.template_id == template_id)
            .values(archived=True)
            .returning(templates.c.template_id)
        )
    if done is None:
        raise HTTPException(404, detail=f"no template {template_id!r}")
    return Response(status_code=204)


class PreviewRequest(Model):
    customer_id: str = Field(min_length=1, max_length=256)
    channel: Channel = Channel.EMAIL
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    context: dict[str, JsonValue] = Field(default_factory=dict)


class PreviewPublic(Model):
    channel: Channel
    locale: str
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    title: str | None = None
    url: str | None = None
    whatsapp_template: str | None = None
    whatsapp_parameters: list[str] = Field(default_factory=list)
    data: dict[str, str] | None = None


@router.post(
    "/v1/templates/{template_id}/preview", response_model=PreviewPublic, tags=["templates"]
)
async def preview_template(
    template_id: str, body: PreviewRequest, request: Request
) -> PreviewPublic:
    """The template rendered for a customer, as the message would be (links signed for
    a preview id that no tracking endpoint knows)."""
    found = await get_template(template_id, request, body.version)
    runtime = _runtime(request)
    async with runtime.engine.connect() as conn:
        contact = (await repo.load_contacts(conn, ids=[body.customer_id])).get(body.customer_id)
    if contact is None or contact.erased:
        raise HTTPException(404, detail=f"no profile {body.customer_id!r} in the projection")
    preview = DispatchRequest(
        dispatch_id=f"preview-{uuid.uuid4()}",
        customer_id=body.customer_id,
        channels=[body.channel],
        template_id=template_id,
        context=body.context,
        requested_at=runtime.clock(),
    )
    if found.definition.variant(body.channel, contact.locale) is None:
        raise HTTPException(
            422,
            detail=[
                {
                    "loc": ["body", "channel"],
                    "msg": f"the template has no {body.channel} variant",
                    "type": "template_error",
                }
            ],
        )
    try:
        outgoing = runtime.dispatcher.compose(
            preview,
            Decision(Action.SEND, body.channel, address="preview"),
            found.definition,
            contact,
        )
    except TemplateError as exc:
        raise HTTPException(
            422, detail=[{"loc": ["template"], "msg": str(exc), "type": "template_error"}]
        ) from None
    r = outgoing.rendered
    return PreviewPublic(
        channel=r.channel,
        locale=r.locale,
        subject=r.subject,
        text=r.text,
        html=r.html,
        title=r.title,
        url=r.url,
        whatsapp_template=r.whatsapp_template,
        whatsapp_parameters=list(r.whatsapp_parameters),
        data=dict(r.data) if r.data else None,
    )


# --- subscription topics ---------------------------------------------------------------


class TopicBody(Model):
    name: str = Field(min_length=1, max_length=256)
    description: str = Field(default="", max_length=2_000)
    default_subscribed: bool = True


class TopicPublic(TopicBody):
    topic: str


@router.get("/v1/topics", response_model=list[TopicPublic], tags=["topics"])
async def list_topics(request: Request) -> list[TopicPublic]:
    async with _runtime(request).engine.connect() as conn:
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


@router.put("/v1/topics/{topic}", response_model=TopicPublic, tags=["topics"])
async def put_topic(
    topic: Annotated[str, Path(max_length=128)], body: TopicBody, request: Request
) -> TopicPublic:
    values = body.model_dump()
    async with _runtime(request).engine.begin() as conn:
        await conn.execute(
            insert(subscription_topics)
            .values(topic=topic, **values)
            .on_conflict_do_update(index_elements=["topic"], set_=values)
        )
    return TopicPublic(topic=topic, **values)


# --- preferences -----------------------------------------------------------------------


class PreferencesBody(Model):
    unsubscribed: bool | None = None
    channels: dict[Channel, bool] = Field(default_factory=dict)
    topics: dict[str, bool] = Field(default_factory=dict, max_length=1_000)


class PreferencesPublic(Model):
    customer_id: str
    unsubscribed: bool
    channels: dict[str, bool]
    topics: dict[str, bool]


@router.get(
    "/v1/customers/{customer_id}/preferences",
    response_model=PreferencesPublic,
    tags=["preferences"],
)
async def get_preferences(customer_id: str, request: Request) -> PreferencesPublic:
    async with _runtime(request).engine.connect() as conn:
        found = (await repo.load_preferences(conn, ids=[customer_id])).get(customer_id)
    prefs = found or repo.preferences_row(None)
    return PreferencesPublic(
        customer_id=customer_id,
        unsubscribed=prefs.unsubscribed,
        channels=dict(prefs.channels),
        topics=dict(prefs.topics),
    )


@router.patch(
    "/v1/customers/{customer_id}/preferences",
    response_model=PreferencesPublic,
    tags=["preferences"],
)
async def update_preferences(
    customer_id: str, body: PreferencesBody, request: Request
) -> PreferencesPublic:
    """Merge: channels and topics named are set, the others kept."""
    runtime = _runtime(request)
    async with runtime.engine.begin() as conn:
        await _set_preferences(
            conn,
            customer_id=customer_id,
            now=runtime.clock(),
            unsubscribed=body.unsubscribed,
            channels={c.value: v for c, v in body.channels.items()} or None,
            topics=body.topics or None,
        )
    return await get_preferences(customer_id, request)


# --- policy ----------------------------------------------------------------------------


@router.get("/v1/policy", response_model=SendPolicy, tags=["policy"])
async def get_policy(request: Request) -> SendPolicy:
    async with _runtime(request).engine.connect() as conn:
        return await repo.load_policy(conn)


@router.put("/v1/policy", response_model=SendPolicy, tags=["policy"])
async def put_policy(body: SendPolicy, request: Request) -> SendPolicy:
    """Frequency caps, quiet hours, the default timezone, the best-time threshold."""
    runtime = _runtime(request)
    async with runtime.engine.begin() as conn:
        await repo.save_policy(conn, document=body, now=runtime.clock())
    return body


# --- deliveries and test sends -----------------------------------------------------------


class OutcomePublic(Model):
    outcome_id: str
    status: str
    reason: str | None
    channel: str | None
    at: datetime
    deferred_until: datetime | None
    provider_message_id: str | None


class DeliveryPublic(Model):
    dispatch_id: str
    customer_id: str
    status: str
    channel: str | None
    template_id: str
    template_version: int | None
    reason: str | None
    deferred_until: datetime | None
    sent_at: datetime | None
    attempts: int
    created_at: datetime
    journey_id: str | None = None
    step_id: str | None = None
    outcomes: list[OutcomePublic]


@router.get(
    "/v1/customers/{customer_id}/deliveries",
    response_model=list[DeliveryPublic],
    tags=["deliveries"],
)
async def customer_deliveries(
    customer_id: str,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
) -> list[DeliveryPublic]:
    """The customer's latest deliveries, newest first, each with its outcomes."""
    async with _runtime(request).engine.connect() as conn:
        rows = (
            await conn.execute(
                select(deliveries)
                .where(deliveries.c.customer_id == customer_id)
                .order_by(deliveries.c.created_at.desc(), deliveries.c.dispatch_id)
                .limit(limit)
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
            OutcomePublic(
                outcome_id=o.outcome_id,
                status=o.status,
                reason=o.reason,
                channel=o.channel,
                at=o.at,
                deferred_until=o.deferred_until,
                provider_message_id=o.provider_message_id,
            )
        )
    return [
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
            journey_id=(r.request or {}).get("journeyId"),
            step_id=(r.request or {}).get("stepId"),
            outcomes=by_dispatch.get(r.dispatch_id, []),
        )
        for r in rows
    ]


class TestSend(Model):
    customer_id: str = Field(min_length=1, max_length=256)
    template_id: str = Field(min_length=1, max_length=256)
    template_version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    channels: list[Channel] = Field(
        default_factory=lambda: [Channel.EMAIL], min_length=1, max_length=len(Channel)
    )
    context: dict[str, JsonValue] = Field(default_factory=dict)
    #: ``critical`` (default) skips caps and quiet hours; consent always applies
    priority: Priority = Priority.CRITICAL


@router.post("/v1/test-sends", status_code=201, response_model=DeliveryPublic, tags=["deliveries"])
async def test_send(body: TestSend, request: Request) -> DeliveryPublic:
    """Send a template to a customer now, through every check, and answer with the
    delivery and its outcomes."""
    runtime = _runtime(request)
    try:
        dispatch = DispatchRequest(
            dispatch_id=f"test-{uuid.uuid4()}",
            customer_id=body.customer_id,
            channels=body.channels,
            template_id=body.template_id,
            template_version=body.template_version,
            priority=body.priority,
            context=body.context,
            requested_at=runtime.clock(),
        )
    except ValidationError as exc:  # what the topic's schema refuses, as a 422
        errors = exc.errors(include_url=False, include_context=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None
    await runtime.dispatcher.handle_requests([dispatch])
    found = await customer_deliveries(body.customer_id, request, limit=1_000)
    for delivery in found:
        if delivery.dispatch_id == dispatch.dispatch_id:
            return delivery
    raise HTTPException(500, detail="the test send was not recorded")  # pragma: no cover


_ = preferences  # the table the preference routes write through _set_preferences
