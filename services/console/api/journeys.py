"""Journeys: the list with state; create and edit the draft (JSON, checked by the
journey service, its errors pinned to the step they name); a page per journey with its
Mermaid diagram (the journey API's, with live counts per step), its runs, its splits'
verdicts and the uplift against the holdout (metrics); a simulation of a customer
history on the virtual clock; publish / pause / resume / archive."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, Response

from services.console.api.deps import (
    PAGE,
    CsrfDep,
    RuntimeDep,
    SessionDep,
    quoted,
    render,
    see_other,
)
from services.console.runtime import Runtime, UpstreamError
from services.console.schemas import FieldErrors, parse_json_object, pretty, sections

router = APIRouter(prefix="/journeys")

#: the buttons, and the note each leaves on the page
ACTIONS = {"publish": "published", "pause": "paused", "resume": "resumed", "archive": "archived"}
FIELDS = {"definition": "definition", "id": "id", "name": "name", "history": "history"}
EXAMPLE = {
    "triggers": [{"kind": "event", "event": "Order Completed"}],
    "steps": [
        {
            "id": "thank",
            "type": "send",
            "channels": ["email"],
            "template_id": "thanks",
            "next": "done",
        },
        {"id": "done", "type": "exit"},
    ],
}
EXAMPLE_HISTORY = [
    {"at": "2026-06-01T12:00:00Z", "event": "Order Completed", "properties": {"revenue": 42}}
]


def pinned(errors: FieldErrors, definition: dict[str, Any] | None) -> FieldErrors:
    """``steps.3.next: …`` reads ``step "remind" (steps.3) next: …``: the step by its id."""
    steps = definition.get("steps") if isinstance(definition, dict) else None
    if not isinstance(steps, list):
        return errors
    named = FieldErrors()
    for field, messages in errors.by_field.items():
        for message in messages:
            where, sep, rest = message.partition(": ")
            parts = where.split(".")
            if sep and len(parts) >= 2 and parts[0] == "steps" and parts[1].isdigit():
                index = int(parts[1])
                step = steps[index] if index < len(steps) else None
                if isinstance(step, dict) and isinstance(step.get("id"), str):
                    tail = ".".join(parts[2:])
                    message = f'step "{step["id"]}" ({parts[0]}.{index}) {tail}: {rest}'.replace(
                        ") :", "):"
                    )
            named.add(field, message)
    return named


@router.get("")
async def list_journeys(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """A page of journeys with their live counts (one call, one query in the service)."""
    page = await runtime.journey.get(
        "/v1/journeys/summaries", token=session.token, after=after, limit=PAGE
    )
    return render(request, "journeys/list.html", page=page, after=after)


def _new_page(
    request: Request, form: dict[str, str], errors: FieldErrors, status_code: int = 200
) -> Response:
    return render(request, "journeys/new.html", status_code=status_code, form=form, errors=errors)


@router.get("/new")
async def new_journey(request: Request, session: SessionDep) -> Response:
    form = {"id": "", "name": "", "description": "", "definition": pretty(EXAMPLE)}
    return _new_page(request, form, FieldErrors())


@router.post("/new")
async def create_journey(
    request: Request,
    runtime: RuntimeDep,
    session: CsrfDep,
    id: Annotated[str, Form(max_length=128)] = "",
    name: Annotated[str, Form(max_length=255)] = "",
    description: Annotated[str, Form(max_length=2_000)] = "",
    definition: Annotated[str, Form(max_length=500_000)] = "",
) -> Response:
    form = {"id": id, "name": name, "description": description, "definition": definition}
    errors = FieldErrors()
    document = parse_json_object(definition, errors, "definition")
    if not name.strip():
        errors.add("name", "give the journey a name")
    if errors:
        return _new_page(request, form, errors, 422)
    body: dict[str, Any] = {
        "name": name.strip(),
        "description": description,
        "definition": document,
    }
    if id.strip():
        body["id"] = id.strip()
    try:
        saved = await runtime.journey.post("/v1/journeys", token=session.token, json=body)
    except UpstreamError as exc:
        found = pinned(FieldErrors.from_refused_save(exc, FIELDS), document)
        return _new_page(request, form, found, 422)
    return see_other(f"/journeys/{quoted(saved['id'])}?note=draft-saved")


async def _page(
    request: Request,
    runtime: Runtime,
    token: str,
    journey_id: str,
    *,
    definition: str | None = None,
    history: str | None = None,
    errors: FieldErrors | None = None,
    checked: dict[str, Any] | None = None,
    simulated: dict[str, Any] | None = None,
    status_code: int = 200,
    runs_after: str | None = None,
) -> Response:
    path = f"/v1/journeys/{quoted(journey_id)}"
    journey = await runtime.journey.get(path, token=token)
    known = quoted(journey["id"])
    diagram, runs, experiments, uplift = await sections(
        runtime.journey.get(f"{path}/diagram", token=token),
        runtime.journey.get(f"{path}/runs", token=token, limit=20, after=runs_after),
        runtime.metrics.get("/v1/experiments", token=token, journey_id=journey["id"]),
        runtime.metrics.get(f"/v1/kpis/uplift/{known}", token=token),
    )
    steps = [step["id"] for step in journey["draft"].get("steps", [])]
    return render(
        request,
        "journeys/detail.html",
        status_code=status_code,
        journey=journey,
        diagram=diagram,
        runs=runs,
        experiments=experiments,
        uplift=uplift,
        steps=steps,
        actions=ACTIONS,
        definition=definition if definition is not None else pretty(journey["draft"]),
        history=history if history is not None else pretty(EXAMPLE_HISTORY),
        errors=errors or FieldErrors(),
        checked=checked,
        simulated=simulated,
    )


@router.get("/{journey_id}")
async def journey_page(
    request: Request,
    journey_id: str,
    runtime: RuntimeDep,
    session: SessionDep,
    runs_after: str | None = None,
) -> Response:
    return await _page(request, runtime, session.token, journey_id, runs_after=runs_after)


@router.get("/{journey_id}/counts")
async def counts(journey_id: str, runtime: RuntimeDep, session: SessionDep) -> Response:
    """For the page's script: the live counts per step, to refresh the table."""
    diagram = await runtime.journey.get(
        f"/v1/journeys/{quoted(journey_id)}/diagram", token=session.token
    )
    return JSONResponse({"counts": diagram["counts"]})


@router.post("/{journey_id}/draft")
async def save_draft(
    request: Request,
    journey_id: str,
    runtime: RuntimeDep,
    session: CsrfDep,
    definition: Annotated[str, Form(max_length=500_000)] = "",
    action: Annotated[str, Form(max_length=16)] = "save",
) -> Response:
    """``validate`` asks the journey service whether the draft holds together; ``save``
    stores it as the draft (published versions are untouched until Publish)."""
    errors = FieldErrors()
    document = parse_json_object(definition, errors, "definition")
    checked = None
    if document is not None:
        try:
            if action == "validate":
                checked = await runtime.journey.post(
                    "/v1/journeys/validate", token=session.token, json={"definition": document}
                )
            else:
                await runtime.journey.call(
                    "PUT",
                    f"/v1/journeys/{quoted(journey_id)}",
                    token=session.token,
                    json={"definition": document},
                )
                return see_other(f"/journeys/{quoted(journey_id)}?note=draft-saved")
        except UpstreamError as exc:
            if exc.status not in (409, 422):
                raise
            errors = pinned(FieldErrors.from_problem(exc, FIELDS), document).gathered("definition")
    return await _page(
        request,
        runtime,
        session.token,
        journey_id,
        definition=definition,
        errors=errors,
        checked=checked,
        status_code=422 if errors else 200,
    )


@router.post("/{journey_id}/simulate")
async def simulate(
    request: Request,
    journey_id: str,
    runtime: RuntimeDep,
    session: CsrfDep,
    history: Annotated[str, Form(max_length=500_000)] = "",
) -> Response:
    """A customer history walked through the draft on the virtual clock: each run's
    path and the messages it would send; nothing is stored or sent."""
    errors = FieldErrors()
    simulated = None
    try:
        inputs = json.loads(history)
    except ValueError as exc:
        errors.add("history", f"not JSON: {exc}")
    else:
        if not isinstance(inputs, list):
            errors.add("history", "must be a JSON list of inputs ([…])")
        else:
            try:
                simulated = await runtime.journey.post(
                    f"/v1/journeys/{quoted(journey_id)}/simulate",
                    token=session.token,
                    json={"history": inputs},
                )
            except UpstreamError as exc:
                if exc.status != 422:
                    raise
                errors = FieldErrors.from_problem(exc, FIELDS).gathered("history")
    return await _page(
        request,
        runtime,
        session.token,
        journey_id,
        history=history,
        errors=errors,
        simulated=simulated,
        status_code=422 if errors else 200,
    )


@router.post("/{journey_id}/{action}")
async def act(
    request: Request, journey_id: str, action: str, runtime: RuntimeDep, session: CsrfDep
) -> Response:
    if action not in ACTIONS:
        return render(request, "error.html", status_code=404, title="No such action", detail=action)
    await runtime.journey.post(f"/v1/journeys/{quoted(journey_id)}/{action}", token=session.token)
    return see_other(f"/journeys/{quoted(journey_id)}?note={ACTIONS[action]}")
