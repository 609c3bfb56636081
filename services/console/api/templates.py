"""Templates: the list, each one's versions, an editor that saves a new version, a
preview rendered by the dispatcher for a chosen customer (its real sandbox and context:
traits, scores, recommendations, coupons), render errors shown inline, and a test send.

The dispatcher previews saved versions only (``POST /v1/templates/{id}/preview`` takes a
version, not a draft): the editor saves a version, then previews it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from services.console.api.deps import (
    PAGE,
    AfterQ,
    CsrfDep,
    RuntimeDep,
    SessionDep,
    page_of,
    quoted,
    render,
    see_other,
)
from services.console.runtime import Runtime, UpstreamError
from services.console.schemas import FieldErrors, parse_json_object, pretty
from shared.events.channels import Channel

router = APIRouter(prefix="/templates")

CHANNELS = [channel.value for channel in Channel]
FIELDS = {
    "definition": "definition",
    "id": "id",
    "customer_id": "customer_id",
    "channel": "channel",
    "context": "context",
    "template": "preview",
}
EXAMPLE = {
    "name": "Welcome",
    "variants": [
        {
            "channel": "email",
            "subject": "Welcome, {{ customer.traits.name | default('friend') }}",
            "html": "<p>Glad you are here.</p>",
        }
    ],
}


@router.get("")
async def list_templates(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    after: AfterQ = None,
) -> Response:
    """A page of templates: one more row than shown tells whether another page follows."""
    found = await runtime.dispatcher.get(
        "/v1/templates", token=session.token, after=after, limit=PAGE + 1
    )
    shown, next_after = page_of(found)
    return render(
        request, "templates/list.html", templates=shown, after=after, next_after=next_after
    )


@router.get("/new")
async def new_template(request: Request, session: SessionDep) -> Response:
    return render(
        request,
        "templates/new.html",
        form={"id": "", "definition": pretty(EXAMPLE)},
        errors=FieldErrors(),
    )


@router.post("/new")
async def create_template(
    request: Request,
    runtime: RuntimeDep,
    session: CsrfDep,
    id: Annotated[str, Form(max_length=128)] = "",
    definition: Annotated[str, Form(max_length=200_000)] = "",
) -> Response:
    errors = FieldErrors()
    form = {"id": id, "definition": definition}
    document = parse_json_object(definition, errors, "definition")
    if document is not None:
        body: dict[str, Any] = {"definition": document}
        if id.strip():
            body["id"] = id.strip()
        try:
            saved = await runtime.dispatcher.post("/v1/templates", token=session.token, json=body)
        except UpstreamError as exc:
            errors = FieldErrors.from_refused_save(exc, FIELDS)
        else:
            return see_other(f"/templates/{quoted(saved['id'])}?note=template-saved")
    return render(request, "templates/new.html", status_code=422, form=form, errors=errors)


async def _page(
    request: Request,
    runtime: Runtime,
    token: str,
    template_id: str,
    *,
    version: int | None = None,
    definition: str | None = None,
    preview_form: dict[str, str] | None = None,
    errors: FieldErrors | None = None,
    rendered: dict[str, Any] | None = None,
    delivery: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    template = await runtime.dispatcher.get(
        f"/v1/templates/{quoted(template_id)}", token=token, version=version
    )
    channels = [v["channel"] for v in template["definition"].get("variants", [])]
    return render(
        request,
        "templates/detail.html",
        status_code=status_code,
        template=template,
        definition=definition if definition is not None else pretty(template["definition"]),
        preview_form=preview_form
        or {"customer_id": "", "channel": channels[0] if channels else "email", "context": "{}"},
        channels=CHANNELS,
        errors=errors or FieldErrors(),
        rendered=rendered,
        delivery=delivery,
    )


@router.get("/{template_id}")
async def template_page(
    request: Request,
    template_id: str,
    runtime: RuntimeDep,
    session: SessionDep,
    version: int | None = None,
) -> Response:
    return await _page(request, runtime, session.token, template_id, version=version)


@router.post("/{template_id}")
async def save_version(
    request: Request,
    template_id: str,
    runtime: RuntimeDep,
    session: CsrfDep,
    definition: Annotated[str, Form(max_length=200_000)] = "",
) -> Response:
    errors = FieldErrors()
    document = parse_json_object(definition, errors, "definition")
    if document is not None:
        try:
            await runtime.dispatcher.call(
                "PUT", f"/v1/templates/{quoted(template_id)}", token=session.token, json=document
            )
        except UpstreamError as exc:
            if exc.status != 422:
                raise
            errors = FieldErrors.from_problem(exc, {"": "definition"} | FIELDS)
        else:
            return see_other(f"/templates/{quoted(template_id)}?note=template-saved")
    return await _page(
        request,
        runtime,
        session.token,
        template_id,
        definition=definition,
        errors=errors.gathered("definition"),
        status_code=422,
    )


def _preview_body(
    form: dict[str, str], errors: FieldErrors, version: int | None
) -> dict[str, Any] | None:
    customer = form["customer_id"].strip()
    if not customer:
        errors.add("customer_id", "choose a customer (their id)")
    if form["channel"] not in CHANNELS:
        errors.add("channel", "unknown channel")
    context = parse_json_object(form["context"] or "{}", errors, "context")
    if errors:
        return None
    body: dict[str, Any] = {"customer_id": customer, "channel": form["channel"], "context": context}
    if version is not None:
        body["version"] = version
    return body


@router.post("/{template_id}/preview")
async def preview(
    request: Request,
    template_id: str,
    runtime: RuntimeDep,
    session: CsrfDep,
    customer_id: Annotated[str, Form(max_length=256)] = "",
    channel: Annotated[str, Form(max_length=32)] = "email",
    context: Annotated[str, Form(max_length=100_000)] = "{}",
    version: Annotated[int | None, Form(ge=1)] = None,
    action: Annotated[str, Form(max_length=16)] = "preview",
) -> Response:
    form = {"customer_id": customer_id, "channel": channel, "context": context}
    errors = FieldErrors()
    body = _preview_body(form, errors, version)
    rendered = delivery = None
    if body is not None:
        try:
            if action == "send":
                send = {
                    "customer_id": body["customer_id"],
                    "template_id": template_id,
                    "channels": [body["channel"]],
                    "context": body["context"],
                }
                if version is not None:
                    send["template_version"] = version
                delivery = await runtime.dispatcher.post(
                    "/v1/test-sends", token=session.token, json=send
                )
            else:
                rendered = await runtime.dispatcher.post(
                    f"/v1/templates/{quoted(template_id)}/preview", token=session.token, json=body
                )
        except UpstreamError as exc:
            if exc.status == 404 and "profile" in exc.detail:
                errors.add("customer_id", exc.detail)
            elif exc.status == 422:
                errors = FieldErrors.from_problem(exc, FIELDS)
                general = errors.by_field.pop("", []) + errors.by_field.pop("preview", [])
                if general:
                    errors.by_field["preview"] = general
            else:
                raise
    return await _page(
        request,
        runtime,
        session.token,
        template_id,
        version=version,
        preview_form=form,
        errors=errors,
        rendered=rendered,
        delivery=delivery,
        status_code=422 if errors else 200,
    )


#: the fields of a variant the form edits; the others (WhatsApp's, webhook ``data``) are
#: kept as they are in the version shown, and edited in the JSON
VARIANT_FIELDS = ("subject", "title", "url", "text", "html")


def variants_from_form(
    form: dict[str, str], kept: list[dict[str, Any]], errors: FieldErrors
) -> list[dict[str, Any]]:
    """The variants of the per-channel form: ``variant-N-channel``, ``-locale`` and the
    text fields; a field left empty is absent; the last, blank fieldset adds one when
    filled; ``variant-N-remove`` drops one."""
    variants: list[dict[str, Any]] = []
    index = 0
    while f"variant-{index}-channel" in form:
        prefix = f"variant-{index}-"
        base = dict(kept[index]) if index < len(kept) else {}
        fields = {name: form.get(prefix + name, "") for name in VARIANT_FIELDS}
        is_new = index >= len(kept)
        if form.get(prefix + "remove") == "on" or (is_new and not any(fields.values())):
            index += 1
            continue
        channel = form[prefix + "channel"]
        if channel not in CHANNELS:
            errors.add(f"variant-{index}", f"unknown channel {channel!r}")
        base["channel"] = channel
        base["locale"] = form.get(prefix + "locale", "").strip() or "default"
        for name, value in fields.items():
            if value.strip():
                base[name] = value
            else:
                base.pop(name, None)
        variants.append(base)
        index += 1
    if not variants:
        errors.add("variants", "keep at least one variant")
    return variants


@router.post("/{template_id}/variants")
async def save_variants(
    request: Request, template_id: str, runtime: RuntimeDep, session: CsrfDep
) -> Response:
    """The per-channel, per-locale form: a new version from the version shown."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    version = int(form["version"]) if form.get("version", "").isdigit() else None
    shown = await runtime.dispatcher.get(
        f"/v1/templates/{quoted(template_id)}", token=session.token, version=version
    )
    errors = FieldErrors()
    definition = dict(shown["definition"])
    definition["name"] = form.get("name", "").strip() or definition["name"]
    definition["subscription_topic"] = form.get("subscription_topic", "").strip() or None
    definition["variants"] = variants_from_form(form, definition.get("variants", []), errors)
    if not errors:
        try:
            await runtime.dispatcher.call(
                "PUT", f"/v1/templates/{quoted(template_id)}", token=session.token, json=definition
            )
        except UpstreamError as exc:
            if exc.status != 422:
                raise
            errors = _variant_errors(exc)
        else:
            return see_other(f"/templates/{quoted(template_id)}?note=template-saved")
    return await _page(
        request,
        runtime,
        session.token,
        template_id,
        version=version,
        definition=pretty(definition),
        errors=errors,
        status_code=422,
    )


def _variant_errors(exc: UpstreamError) -> FieldErrors:
    """``["body", "variants", 1, "subject"]`` → next to variant 1's fieldset; the rest
    (a source that does not compile names its variant in the message) above the form."""
    found = FieldErrors()
    for error in exc.errors:
        loc = [str(part) for part in error.get("loc", [])][1:]
        message = str(error.get("msg", ""))
        if len(loc) >= 2 and loc[0] == "variants" and loc[1].isdigit():
            found.add(f"variant-{loc[1]}", f"{'.'.join(loc[2:]) or 'variant'}: {message}")
        else:
            found.add("variants", message)
    if not found:
        found.add("variants", exc.detail)
    return found
