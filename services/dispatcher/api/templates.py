"""``/v1/templates``: message templates, versioned, and their preview for a customer."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from services.dispatcher import admin_ops as ops
from services.dispatcher import repository as repo
from services.dispatcher.api.deps import RuntimeDep
from services.dispatcher.policy import Action, Decision
from services.dispatcher.schemas import (
    MAX_VERSION,
    PreviewCreate,
    PreviewPublic,
    TemplateCreate,
    TemplatePublic,
)
from services.dispatcher.templates import TemplateDefinition, TemplateError, check_compiles
from shared.events.dispatch_requests import DispatchRequest
from shared.http.admin import ADMIN
from shared.http.nul_body import nul_message, nul_path
from shared.http.problems import Invalid, NotFound, problems
from shared.ids import id_from_name

router = APIRouter(prefix="/v1/templates", tags=["templates"], dependencies=ADMIN)


def _check(definition: TemplateDefinition) -> None:
    """A 422 naming every part of the definition that does not compile."""
    where = nul_path(definition)
    found = [nul_message(where)] if where is not None else check_compiles(definition)
    if found:
        loc = ["body", "definition"]
        raise Invalid(
            "; ".join(found),
            errors=[{"loc": loc, "msg": p, "type": "template_error"} for p in found],
        )


async def _public(
    runtime: RuntimeDep, template_id: str, version: int | None = None
) -> TemplatePublic:
    return await ops.get_template(runtime.engine, template_id=template_id, version=version)


@router.post("", status_code=201, response_model=TemplatePublic, responses=problems(409, 422))
async def create_template(body: TemplateCreate, runtime: RuntimeDep) -> TemplatePublic:
    _check(body.definition)
    template_id = body.id or id_from_name(body.definition.name, "template")
    await ops.create_template(
        runtime.engine, template_id=template_id, definition=body.definition, now=runtime.clock()
    )
    return await _public(runtime, template_id)


@router.put("/{template_id}", response_model=TemplatePublic, responses=problems(404, 422))
async def update_template(
    template_id: str, definition: TemplateDefinition, runtime: RuntimeDep
) -> TemplatePublic:
    """Save a new version; requests that pinned an older one keep it."""
    _check(definition)
    await ops.add_template_version(
        runtime.engine, template_id=template_id, definition=definition, now=runtime.clock()
    )
    return await _public(runtime, template_id)


@router.get("", response_model=list[TemplatePublic])
async def list_templates(
    runtime: RuntimeDep,
    after: Annotated[str | None, Query(max_length=128, description="the last id seen")] = None,
    limit: Annotated[int | None, Query(ge=1, le=1_000, description="a page of at most")] = None,
) -> list[TemplatePublic]:
    """Templates by id (latest versions): every one, or a page (``limit`` after
    ``after``; ask ``limit + 1`` to know whether another page follows)."""
    ids = await ops.template_ids(runtime.engine, after=after, limit=limit)
    return [await _public(runtime, i) for i in ids]


@router.get("/{template_id}", response_model=TemplatePublic, responses=problems(404))
async def get_template(
    template_id: str,
    runtime: RuntimeDep,
    version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
) -> TemplatePublic:
    return await _public(runtime, template_id, version)


@router.delete("/{template_id}", status_code=204, response_class=Response, responses=problems(404))
async def archive_template(template_id: str, runtime: RuntimeDep) -> Response:
    """Archive: requests for its latest version fail (``template_error``); pinned
    versions still render."""
    await ops.archive_template(runtime.engine, template_id=template_id)
    return Response(status_code=204)


@router.post("/{template_id}/preview", response_model=PreviewPublic, responses=problems(404, 422))
async def preview_template(
    template_id: str, body: PreviewCreate, runtime: RuntimeDep
) -> PreviewPublic:
    """The template rendered for a customer, as the message would be (links signed for
    a preview id that no tracking endpoint knows)."""
    found = await _public(runtime, template_id, body.version)
    async with runtime.engine.connect() as conn:
        contact = (await repo.load_contacts(conn, ids=[body.customer_id])).get(body.customer_id)
    if contact is None or contact.erased:
        raise NotFound(f"no profile {body.customer_id!r} in the projection")
    now = runtime.clock()
    preview = DispatchRequest(
        dispatch_id=f"preview-{uuid.uuid4()}",
        customer_id=body.customer_id,
        channels=[body.channel],
        template_id=template_id,
        context=body.context,
        requested_at=now,
    )
    if found.definition.variant(body.channel, contact.locale) is None:
        message = f"the template has no {body.channel} variant"
        raise Invalid(
            message,
            errors=[{"loc": ["body", "channel"], "msg": message, "type": "template_error"}],
        )
    composer = runtime.composer
    try:
        # in a worker thread, as every render (dispatching.py): a template at its time
        # limit must not hold up the event loop (health, tracking pages, the consumer)
        outgoing = await asyncio.to_thread(
            composer.compose,
            preview,
            Decision(Action.SEND, body.channel, address="preview"),
            found.definition,
            contact,
            composer.offers_for(preview, {}, now),
        )
    except TemplateError as exc:
        raise Invalid(
            str(exc), errors=[{"loc": ["template"], "msg": str(exc), "type": "template_error"}]
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
