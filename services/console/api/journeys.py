"""Journeys: the list with state; a page per journey with its Mermaid diagram (the
journey API's, with live counts per step), its runs, and publish / pause / resume /
archive."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from services.console.api.deps import CsrfDep, RuntimeDep, SessionDep, quoted, render
from services.console.schemas import Section

router = APIRouter(prefix="/journeys")

#: the buttons, and the note each leaves on the page
ACTIONS = {"publish": "published", "pause": "paused", "resume": "resumed", "archive": "archived"}


@router.get("")
async def list_journeys(request: Request, runtime: RuntimeDep, session: SessionDep) -> Response:
    journeys = await runtime.journey.get("/v1/journeys", token=session.token)
    return render(request, "journeys/list.html", journeys=journeys)


@router.get("/{journey_id}")
async def journey_page(
    request: Request, journey_id: str, runtime: RuntimeDep, session: SessionDep
) -> Response:
    path = f"/v1/journeys/{quoted(journey_id)}"
    journey = await runtime.journey.get(path, token=session.token)
    results = await asyncio.gather(
        runtime.journey.get(f"{path}/diagram", token=session.token),
        runtime.journey.get(f"{path}/runs", token=session.token, limit=20),
        runtime.metrics.get("/v1/experiments", token=session.token, journey_id=journey["id"]),
        return_exceptions=True,
    )
    diagram, runs, experiments = (Section.of(r) for r in results)
    steps = [step["id"] for step in journey["draft"].get("steps", [])]
    return render(
        request,
        "journeys/detail.html",
        journey=journey,
        diagram=diagram,
        runs=runs,
        experiments=experiments,
        steps=steps,
        actions=ACTIONS,
    )


@router.post("/{journey_id}/{action}")
async def act(
    request: Request, journey_id: str, action: str, runtime: RuntimeDep, session: CsrfDep
) -> Response:
    if action not in ACTIONS:
        return render(request, "error.html", status_code=404, title="No such action", detail=action)
    await runtime.journey.post(f"/v1/journeys/{quoted(journey_id)}/{action}", token=session.token)
    return RedirectResponse(
        f"/journeys/{quoted(journey_id)}?note={ACTIONS[action]}", status_code=303
    )
