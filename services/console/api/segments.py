"""Segments: the list with member counts and status; create and edit with a JSON rule
editor and a structured form for the common leaf (an event counted within days); the
live match count and a sample before saving (the segmenter's ``POST
/v1/segments/preview``); the service's validation errors next to the field."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

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

router = APIRouter(prefix="/segments")

SAMPLE_SIZE = 10
OPS = ["gte", "gt", "eq", "neq", "lte", "lt"]
#: where the segmenter's 422 ``loc`` (after ``body``) lands in the form
FIELDS = {"rule": "rule", "name": "name", "description": "description", "id": "id"}
EXAMPLE_RULE = {
    "kind": "event_count",
    "event": "Order Completed",
    "op": "gte",
    "count": 1,
    "within_days": 30,
}


def leaf_rule(form: dict[str, str], errors: FieldErrors) -> dict[str, Any] | None:
    """The structured form's leaf: ``event`` counted ``op`` ``count`` within ``days``."""
    event = form.get("leaf_event", "").strip()
    if not event:
        errors.add("leaf", "name the event")
    op = form.get("leaf_op", "gte")
    if op not in OPS:
        errors.add("leaf", f"unknown comparison {op!r}")
    numbers: dict[str, int | None] = {}
    for name, label in (("leaf_count", "count"), ("leaf_days", "days")):
        text = form.get(name, "").strip()
        if not text and name == "leaf_days":
            numbers[name] = None
            continue
        try:
            numbers[name] = int(text)
        except ValueError:
            errors.add("leaf", f"{label} must be a whole number")
    if errors.get("leaf"):
        return None
    rule: dict[str, Any] = {"kind": "event_count", "event": event, "op": op}
    rule["count"] = numbers["leaf_count"]
    if numbers["leaf_days"] is not None:
        rule["within_days"] = numbers["leaf_days"]
    return rule


async def preview(
    runtime: Runtime, token: str, rule: dict[str, Any], errors: FieldErrors
) -> dict[str, Any] | None:
    """How many customers match ``rule`` now, and a sample; or the errors, by field."""
    try:
        found: dict[str, Any] = await runtime.segmenter.post(
            "/v1/segments/preview", token=token, json={"rule": rule, "sample_size": SAMPLE_SIZE}
        )
    except UpstreamError as exc:
        if exc.status != 422:
            raise
        for name, messages in FieldErrors.from_problem(exc, FIELDS).by_field.items():
            for message in messages:
                errors.add(name or "rule", message)
        return None
    return found


@router.get("")
async def list_segments(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    after: AfterQ = None,
) -> Response:
    """A page of segments: one more row than shown tells whether another page follows."""
    found = await runtime.segmenter.get(
        "/v1/segments", token=session.token, after=after, limit=PAGE + 1
    )
    shown, next_after = page_of(found)
    return render(request, "segments/list.html", segments=shown, after=after, next_after=next_after)


def _editor(
    request: Request,
    *,
    segment: dict[str, Any] | None,
    form: dict[str, str],
    errors: FieldErrors,
    result: dict[str, Any] | None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "segments/edit.html",
        status_code=status_code,
        segment=segment,
        form=form,
        errors=errors,
        result=result,
        ops=OPS,
        sample_size=SAMPLE_SIZE,
    )


def _blank_form() -> dict[str, str]:
    return {
        "id": "",
        "name": "",
        "description": "",
        "rule": pretty(EXAMPLE_RULE),
        "leaf_event": "Order Completed",
        "leaf_op": "gte",
        "leaf_count": "1",
        "leaf_days": "30",
    }


@router.get("/new")
async def new_segment(request: Request, session: SessionDep) -> Response:
    return _editor(request, segment=None, form=_blank_form(), errors=FieldErrors(), result=None)


async def _submitted(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


async def _handle(
    request: Request, runtime: Runtime, token: str, segment: dict[str, Any] | None
) -> Response:
    """The editor's three buttons: ``leaf`` (the structured form becomes the rule, then
    preview), ``preview`` (the rule as typed), ``save`` (create or a new version)."""
    form = dict.fromkeys(_blank_form(), "") | await _submitted(request)
    action = form.get("action", "preview")
    errors = FieldErrors()
    if action == "leaf":
        rule = leaf_rule(form, errors)
        if rule is not None:
            form["rule"] = pretty(rule)
    else:
        rule = parse_json_object(form.get("rule", ""), errors, "rule")
    if rule is None:
        return _editor(
            request, segment=segment, form=form, errors=errors, result=None, status_code=422
        )
    if action in ("leaf", "preview"):
        result = await preview(runtime, token, rule, errors)
        return _editor(
            request,
            segment=segment,
            form=form,
            errors=errors,
            result=result,
            status_code=422 if errors else 200,
        )
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "description": form.get("description", ""),
        "rule": rule,
    }
    try:
        if segment is None:
            if form.get("id", "").strip():
                body["id"] = form["id"].strip()
            saved = await runtime.segmenter.post("/v1/segments", token=token, json=body)
        else:
            saved = await runtime.segmenter.call(
                "PUT", f"/v1/segments/{quoted(segment['id'])}", token=token, json=body
            )
    except UpstreamError as exc:
        errors = FieldErrors.from_refused_save(exc, FIELDS)
        return _editor(
            request, segment=segment, form=form, errors=errors, result=None, status_code=422
        )
    return see_other(f"/segments/{quoted(saved['id'])}?note=segment-saved")


@router.post("/new")
async def create_segment(request: Request, runtime: RuntimeDep, session: CsrfDep) -> Response:
    return await _handle(request, runtime, session.token, None)


@router.post("/preview")
async def preview_json(request: Request, runtime: RuntimeDep, session: CsrfDep) -> Response:
    """For the editor's script: ``{"rule": …}`` → ``{count, sample}`` or ``{errors}``."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    rule = body.get("rule") if isinstance(body, dict) else None
    if not isinstance(rule, dict):
        return JSONResponse({"errors": {"rule": ["must be a JSON object ({…})"]}}, 422)
    errors = FieldErrors()
    found = await preview(runtime, session.token, rule, errors)
    if found is None:
        return JSONResponse({"errors": errors.by_field}, 422)
    return JSONResponse({"count": found["count"], "sample": found["sample"]})


@router.get("/{segment_id}")
async def segment_page(
    request: Request,
    segment_id: str,
    runtime: RuntimeDep,
    session: SessionDep,
    after: str | None = None,
) -> Response:
    path = f"/v1/segments/{quoted(segment_id)}"
    segment, versions, members = await asyncio.gather(
        runtime.segmenter.get(path, token=session.token),
        runtime.segmenter.get(f"{path}/versions", token=session.token),
        runtime.segmenter.get(f"{path}/members", token=session.token, limit=20, after=after),
    )
    form = _blank_form() | {
        "name": segment["name"],
        "description": segment["description"],
        "rule": pretty(segment["rule"]),
    }
    return render(
        request,
        "segments/detail.html",
        segment=segment,
        versions=versions,
        members=members,
        form=form,
        errors=FieldErrors(),
        result=None,
        ops=OPS,
        sample_size=SAMPLE_SIZE,
    )


@router.post("/{segment_id}")
async def edit_segment(
    request: Request, segment_id: str, runtime: RuntimeDep, session: CsrfDep
) -> Response:
    segment = await runtime.segmenter.get(f"/v1/segments/{quoted(segment_id)}", token=session.token)
    return await _handle(request, runtime, session.token, segment)
