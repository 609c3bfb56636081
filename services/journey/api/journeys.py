"""``/v1/journeys``: definitions and their lifecycle, a journey's runs, simulation and
its diagram."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import ValidationError
from sqlalchemy import insert

from services.journey import repository as repo
from services.journey.api.deps import RuntimeDep
from services.journey.definition import JourneyDefinition
from services.journey.diagram import mermaid
from services.journey.machine import Facts, Run, Stop
from services.journey.runtime import Runtime
from services.journey.schemas import (
    DiagramPublic,
    JourneyCreate,
    JourneyPublic,
    JourneySummariesPublic,
    JourneySummaryPublic,
    JourneyUpdate,
    RunPublic,
    RunsPublic,
    SimulatePublic,
    SimulateRequest,
    ValidatePublic,
    ValidateRequest,
    VersionPublic,
    WaitingPublic,
)
from services.journey.simulate import describe, simulate
from shared.db.engine import snapshot
from shared.events.journey_runs import ExitReason
from shared.http.admin import ADMIN
from shared.http.problems import Conflict, Invalid, NotFound, problems
from shared.ids import id_from_name

#: ids ``GET /v1/journeys/{id}`` could not reach: a route of their own
RESERVED_IDS = frozenset({"summaries"})

router = APIRouter(prefix="/v1/journeys", tags=["journeys"], dependencies=ADMIN)


def _dump(definition: JourneyDefinition) -> dict[str, Any]:
    return definition.model_dump(mode="json", exclude_none=True)


def _public(row: Any, published: dict[str, Any] | None) -> JourneyPublic:
    return JourneyPublic(
        id=row.id,
        name=row.name,
        description=row.description,
        status=row.status,
        version=row.version,
        draft=row.draft,
        unpublished_changes=published != row.draft,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def run_public(run: Run) -> RunPublic:
    waiting = run.waiting
    return RunPublic(
        run_id=run.run_id,
        journey_id=run.journey_id,
        journey_version=run.version,
        customer_id=run.customer_id,
        status=run.status,
        step_id=run.step_id,
        waiting=None
        if waiting is None or run.status != "active"
        else WaitingPublic(
            kind=waiting.kind,
            until=waiting.until,
            event=waiting.event,
            dispatch_id=waiting.dispatch_id,
        ),
        holdout=run.holdout,
        variant=run.variant,
        entered_at=run.entered_at,
        converted_at=run.converted_at,
        exited_at=run.exited_at,
        exit_reason=run.exit_reason.value if run.exit_reason else None,
        trigger_event=run.trigger_event,
        trigger=dict(run.trigger),
    )


async def _journey_or_404(conn: Any, journey_id: str) -> Any:
    row = await repo.get_journey(conn, journey_id=journey_id)
    if row is None:
        raise NotFound(f"no journey {journey_id!r}")
    return row


async def _published(conn: Any, row: Any) -> dict[str, Any] | None:
    if row.version is None:
        return None
    for version in await repo.journey_versions(conn, journey_id=row.id):
        if version.version == row.version:
            return version.definition  # type: ignore[no-any-return]
    return None


@router.post("", status_code=201, response_model=JourneyPublic, responses=problems(409))
async def create_journey(body: JourneyCreate, runtime: RuntimeDep) -> JourneyPublic:
    """Create a journey as a draft; it runs once published."""
    journey_id = body.id or id_from_name(body.name, "journey")
    if journey_id in RESERVED_IDS:
        raise Invalid(f"{journey_id!r} names a route; choose another id", loc=("body", "id"))
    now = runtime.clock()
    async with runtime.engine.begin() as conn:
        if await repo.get_journey(conn, journey_id=journey_id) is not None:
            raise Conflict(f"journey {journey_id!r} already exists")
        await conn.execute(
            insert(repo.journeys).values(
                id=journey_id,
                name=body.name,
                description=body.description,
                status="draft",
                draft=_dump(body.definition),
                created_at=now,
                updated_at=now,
            )
        )
    return await get_journey(journey_id, runtime)


@router.post("/validate", response_model=ValidatePublic)
async def validate_journey(body: ValidateRequest) -> ValidatePublic:
    """Check a definition without saving it: 200, or 422 naming the step at fault."""
    return ValidatePublic(
        steps=len(body.definition.steps), reads_events=sorted(body.definition.event_names())
    )


@router.get("", response_model=list[JourneyPublic])
async def list_journeys(runtime: RuntimeDep) -> list[JourneyPublic]:
    async with snapshot(runtime.engine) as conn:
        return [_public(row, await _published(conn, row)) for row in await repo.list_journeys(conn)]


@router.get("/summaries", response_model=JourneySummariesPublic)
async def journey_summaries(
    runtime: RuntimeDep,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JourneySummariesPublic:
    """A page of journeys (by id) with their live counts — runs active now, converted,
    exited — in one query: what a list shows without a call per journey."""
    async with snapshot(runtime.engine) as conn:
        rows = await repo.journey_summaries(conn, after=after, limit=limit + 1)
    page = [
        JourneySummaryPublic(
            id=row.id,
            name=row.name,
            status=row.status,
            version=row.version,
            updated_at=row.updated_at,
            active=int(row.active),
            converted=int(row.converted),
            exited=int(row.exited),
        )
        for row in rows[:limit]
    ]
    return JourneySummariesPublic(
        journeys=page, next_after=page[-1].id if len(rows) > limit else None
    )


@router.get("/{journey_id}", response_model=JourneyPublic, responses=problems(404))
async def get_journey(journey_id: str, runtime: RuntimeDep) -> JourneyPublic:
    async with snapshot(runtime.engine) as conn:
        row = await _journey_or_404(conn, journey_id)
        return _public(row, await _published(conn, row))


@router.put("/{journey_id}", response_model=JourneyPublic, responses=problems(404, 409))
async def update_journey(
    journey_id: str, body: JourneyUpdate, runtime: RuntimeDep
) -> JourneyPublic:
    """Change the draft (publish to make it the version new entrants take)."""
    async with runtime.engine.begin() as conn:
        row = await repo.lock_journey(conn, journey_id=journey_id)
        if row is None:
            raise NotFound(f"no journey {journey_id!r}")
        if row.status == "archived":
            raise Conflict(f"journey {journey_id!r} is archived")
        values: dict[str, Any] = {}
        if body.name is not None:
            values["name"] = body.name
        if body.description is not None:
            values["description"] = body.description
        if body.definition is not None:
            values["draft"] = _dump(body.definition)
        await repo.set_journey(conn, journey_id=journey_id, now=runtime.clock(), **values)
    return await get_journey(journey_id, runtime)


@router.delete("/{journey_id}", status_code=204, responses=problems(404, 409))
async def delete_journey(journey_id: str, runtime: RuntimeDep) -> Response:
    """Delete a journey never published; a published one is archived instead (409)."""
    async with runtime.engine.begin() as conn:
        row = await repo.lock_journey(conn, journey_id=journey_id)
        if row is None:
            raise NotFound(f"no journey {journey_id!r}")
        if row.version is not None:
            raise Conflict(f"journey {journey_id!r} was published: archive it instead")
        await conn.execute(repo.journeys.delete().where(repo.journeys.c.id == journey_id))
    return Response(status_code=204)


@router.post(
    "/{journey_id}/publish", response_model=JourneyPublic, responses=problems(404, 409, 422, 503)
)
async def publish_journey(journey_id: str, runtime: RuntimeDep) -> JourneyPublic:
    """The draft becomes a new version, which new entrants take; the journey becomes
    active. Runs in flight stay on the version they entered. Every segment and
    template (version) the draft names must exist: 422 naming those that do not;
    503 when the segmenter or dispatcher cannot be asked."""
    # asked before the row is locked: the other services may take a moment to answer
    async with snapshot(runtime.engine) as conn:
        checked = (await _journey_or_404(conn, journey_id)).draft
    await runtime.references.check(_definition(checked))
    now = runtime.clock()
    async with runtime.engine.begin() as conn:
        row = await repo.lock_journey(conn, journey_id=journey_id)
        if row is None:
            raise NotFound(f"no journey {journey_id!r}")
        if row.status == "archived":
            raise Conflict(f"journey {journey_id!r} is archived")
        if row.draft != checked:  # edited meanwhile: check what is published
            await runtime.references.check(_definition(row.draft))
        version = (row.version or 0) + 1
        await conn.execute(
            insert(repo.versions).values(
                journey_id=journey_id, version=version, definition=row.draft, published_at=now
            )
        )
        await repo.set_journey(
            conn, journey_id=journey_id, now=now, version=version, status="active"
        )
    runtime.catalogs.invalidate()
    return await get_journey(journey_id, runtime)


def _definition(draft: Any) -> JourneyDefinition:
    try:
        return JourneyDefinition.model_validate(draft)
    except ValidationError as exc:  # a draft saved by an older, laxer version
        raise Invalid(
            f"the draft is not a valid journey: {exc.error_count()} error(s)",
            errors=[
                {"loc": ["draft", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False, include_input=False)
            ],
        ) from None


async def _set_status(
    runtime: Runtime, journey_id: str, *, allowed: tuple[str, ...], status: str
) -> JourneyPublic:
    async with runtime.engine.begin() as conn:
        row = await repo.lock_journey(conn, journey_id=journey_id)
        if row is None:
            raise NotFound(f"no journey {journey_id!r}")
        if row.status not in allowed:
            raise Conflict(f"journey {journey_id!r} is {row.status}: cannot become {status}")
        await repo.set_journey(conn, journey_id=journey_id, now=runtime.clock(), status=status)
    runtime.catalogs.invalidate()
    return await get_journey(journey_id, runtime)


@router.post("/{journey_id}/pause", response_model=JourneyPublic, responses=problems(404, 409))
async def pause_journey(journey_id: str, runtime: RuntimeDep) -> JourneyPublic:
    """No new entrants; runs in flight go on."""
    return await _set_status(runtime, journey_id, allowed=("active", "paused"), status="paused")


@router.post("/{journey_id}/resume", response_model=JourneyPublic, responses=problems(404, 409))
async def resume_journey(journey_id: str, runtime: RuntimeDep) -> JourneyPublic:
    return await _set_status(runtime, journey_id, allowed=("paused", "active"), status="active")


@router.post("/{journey_id}/archive", response_model=JourneyPublic, responses=problems(404, 409))
async def archive_journey(journey_id: str, runtime: RuntimeDep) -> JourneyPublic:
    """No new entrants, and every run in flight exits (``archived``)."""
    public = await _set_status(
        runtime,
        journey_id,
        allowed=("draft", "active", "paused", "archived"),
        status="archived",
    )
    while True:
        async with runtime.engine.connect() as conn:
            run_ids = (await repo.active_run_ids(conn, journey_id=journey_id))[:1_000]
        if not run_ids:
            break
        await runtime.apply_to_runs(run_ids, Stop(ExitReason.ARCHIVED))
    return public


@router.get("/{journey_id}/versions", response_model=list[VersionPublic], responses=problems(404))
async def list_versions(journey_id: str, runtime: RuntimeDep) -> list[VersionPublic]:
    async with snapshot(runtime.engine) as conn:
        await _journey_or_404(conn, journey_id)
        rows = await repo.journey_versions(conn, journey_id=journey_id)
    return [
        VersionPublic(version=r.version, definition=r.definition, published_at=r.published_at)
        for r in rows
    ]


@router.get("/{journey_id}/runs", response_model=RunsPublic, responses=problems(404))
async def journey_runs(
    journey_id: str,
    runtime: RuntimeDep,
    status: Annotated[str | None, Query(pattern="^(active|exited)$")] = None,
    step_id: str | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
) -> RunsPublic:
    """A journey's runs, in run id order (page with ``after``)."""
    async with snapshot(runtime.engine) as conn:
        await _journey_or_404(conn, journey_id)
        found = await repo.list_runs(
            conn, journey_id=journey_id, status=status, step_id=step_id, after=after, limit=limit
        )
    return RunsPublic(
        runs=[run_public(r) for r in found],
        next_after=found[-1].run_id if len(found) == limit else None,
    )


@router.post("/{journey_id}/simulate", response_model=SimulatePublic, responses=problems(404))
async def simulate_journey(
    journey_id: str, body: SimulateRequest, runtime: RuntimeDep
) -> SimulatePublic:
    """Walk a customer history through the journey on a virtual clock: the path each
    run takes and the messages it would send. Nothing is stored or sent."""
    async with snapshot(runtime.engine) as conn:
        row = await _journey_or_404(conn, journey_id)
    definition = body.definition or JourneyDefinition.model_validate(row.draft)
    profile = body.profile
    facts = Facts(
        traits=profile.traits,
        memberships=frozenset(profile.memberships),
        churn_risk=profile.churn_risk,
        predicted_ltv=profile.predicted_ltv,
        rfm_tier=profile.rfm_tier,
        timezone=profile.timezone,
        winners=body.winners,
    )
    result = simulate(
        definition,
        journey_id=journey_id,
        version=row.version or 1,
        customer_id=body.customer_id,
        facts=facts,
        history=body.history,
        until=body.until,
        max_days=runtime.settings.journey.simulate_max_days,
    )
    return SimulatePublic.model_validate(
        {
            "runs": [describe(state) for state in result.runs],
            "refused": result.refused,
            "ended_at": result.ended_at,
        }
    )


@router.get("/{journey_id}/diagram", response_model=DiagramPublic, responses=problems(404))
async def journey_diagram(
    journey_id: str,
    runtime: RuntimeDep,
    format: Annotated[str, Query(pattern="^(json|text)$")] = "json",
) -> Any:
    """The published version (else the draft) as a Mermaid flowchart with each step's
    live counts: entered, waiting now, converted, exited."""
    async with snapshot(runtime.engine) as conn:
        row = await _journey_or_404(conn, journey_id)
        document = await _published(conn, row) or row.draft
        counts = await repo.step_counts_of(conn, journey_id=journey_id)
    text = mermaid(JourneyDefinition.model_validate(document), counts)
    if format == "text":
        return Response(text, media_type="text/plain; charset=utf-8")
    return DiagramPublic(journey_id=journey_id, version=row.version, mermaid=text, counts=counts)
