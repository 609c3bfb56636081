"""The metrics service: the consumer of every topic, the experiment evaluator, the
outbox relay of ``experiment.decisions``, the KPI API and the report page.

Every ``/v1`` endpoint needs ``Authorization: Bearer <admin token>``; ``/report``
is a static page that asks for the token and reads ``/v1/report`` with it.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from services.metrics import objectives as goals
from services.metrics import queries
from services.metrics.consumer import DECODERS, MetricsBatchHandler
from services.metrics.experiments import evaluate_all, plan_experiment
from services.metrics.metrics import (
    ACTIVE_CUSTOMERS,
    CHURN_RATE,
    LTV_TO_DATE,
    OUTBOX_BACKLOG,
    REPEAT_PURCHASE_RATE,
)
from services.metrics.models import HOLDOUT_STEP, outbox, processed_messages
from services.metrics.periods import period_start, shift_period
from services.metrics.settings import MetricsSettings, get_settings
from services.metrics.stats import Policy
from shared.auth import TokenDigests
from shared.collector import tuned_for_throughput
from shared.db.claims import claims_cleanup
from shared.db.engine import create_engine, driver_connection, snapshot
from shared.db.outbox import OutboxRelay
from shared.db.transient import is_transient_db_error
from shared.http.admin import require_admin
from shared.http.app import create_service_app
from shared.http.nul_body import NulFree
from shared.http.problems import Invalid
from shared.kafka.consumer import ConsumerRunner
from shared.kafka.dlq import DeadLetterPolicy
from shared.kafka.producer import EventPublisher
from shared.runtime import ServiceRuntime
from shared.stopping import PeriodicJob

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
STATIC = Path(__file__).parent / "static"
MAX_DAYS = 3_700
#: an objective's progress is measured from the period before its start
MIN_OBJECTIVE_START = date(1900, 1, 1)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Runtime:
    """What the lifespan builds and the routes use: the metrics service's parts, started
    and stopped by a :class:`~shared.runtime.ServiceRuntime`."""

    def __init__(self, settings: MetricsSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        group = settings.metrics
        self.engine: AsyncEngine = create_engine(settings.database)
        self.publisher = EventPublisher(settings.kafka, client_id="tenure-metrics")
        self.relay = OutboxRelay(engine=self.engine, outbox=outbox, publisher=self.publisher)
        self.service = ServiceRuntime(
            "metrics", engine=self.engine, publisher=self.publisher, relay=self.relay
        )
        self.policy = Policy(
            alpha=group.alpha,
            tau=group.mixture_tau,
            min_exposed=group.min_exposed,
            min_converted=group.min_converted,
            equivalence_margin=group.equivalence_margin,
            max_unsubscribe_increase=group.max_unsubscribe_increase,
            max_complaint_increase=group.max_complaint_increase,
        )
        self.runner = self.service.consumer(
            "consumer",
            ConsumerRunner(
                settings=settings.kafka,
                group_id=group.consumer_group,
                decoders=DECODERS,
                handler=MetricsBatchHandler(
                    engine=self.engine,
                    purchase_event=group.purchase_event,
                    goals=group.goals,
                    attribution_window=timedelta(hours=group.attribution_window_hours),
                ),
                dead_letters=DeadLetterPolicy(self.publisher),
                is_transient=is_transient_db_error,
                max_records=group.max_batch_records,
            ),
        )
        self.service.loop(
            "evaluator",
            PeriodicJob(
                self.evaluate, name="experiment evaluation", interval_s=group.evaluate_interval_s
            ),
        )
        self.service.loop(
            "claims cleanup",
            claims_cleanup(
                engine=self.engine,
                table=processed_messages,
                clock=clock,
                retention=timedelta(days=group.dedup_retention_days),
            ),
        )

    async def evaluate(self) -> int:
        """Evaluate every experiment, enqueue decisions, refresh the KPI gauges."""
        now = self.clock()
        enqueued = await evaluate_all(self.engine, policy=self.policy, now=now)
        if enqueued:
            self.relay.notify()
        await self._refresh_gauges(now.date())
        return enqueued

    async def _refresh_gauges(self, today: date) -> None:
        async with snapshot(self.engine) as conn:
            driver = await driver_connection(conn)
            for kind in ("day", "week", "month"):
                rows = await queries.activity(driver, kind=kind, start=today, end=today)
                ACTIVE_CUSTOMERS.labels(kind).set(rows[-1]["active"] if rows else 0)
                # the last complete period against the one before it
                last = shift_period(kind, period_start(kind, today), -1)
                done = await queries.activity(driver, kind=kind, start=last, end=last)
                churn = done[-1]["churn_rate"] if done else None
                CHURN_RATE.labels(kind).set(churn if churn is not None else float("nan"))
            value = await driver.fetchrow(
                "SELECT coalesce(sum(revenue) / nullif(sum(customers), 0), 0), "
                "coalesce(sum(repeat_buyers)::float8 / nullif(sum(buyers), 0), 0) "
                "FROM metrics.first_day_totals"
            )
            LTV_TO_DATE.set(float(value[0]))
            REPEAT_PURCHASE_RATE.set(float(value[1]))
            backlog = await driver.fetchval("SELECT coalesce(sum(messages), 0) FROM metrics.outbox")
            OUTBOX_BACKLOG.set(int(backlog))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime = Runtime(app.state.settings, app.state.clock)
    app.state.runtime = runtime
    async with runtime.service.running(app):
        with tuned_for_throughput():
            yield


# --- dependencies ----------------------------------------------------------------------


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
#: a journey version, as the events carry it (``ge=1``) and Postgres stores it (int4)
VersionP = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
FromQ = Annotated[date | None, Query(alias="from", description="first day (UTC), inclusive")]
ToQ = Annotated[date | None, Query(alias="to", description="last day (UTC), inclusive")]
kpis = APIRouter(prefix="/v1/kpis", tags=["kpis"], dependencies=[Depends(require_admin)])
experiments_router = APIRouter(
    prefix="/v1/experiments", tags=["experiments"], dependencies=[Depends(require_admin)]
)
objectives_router = APIRouter(
    prefix="/v1/objectives", tags=["objectives"], dependencies=[Depends(require_admin)]
)
report_router = APIRouter(
    prefix="/v1/report", tags=["report"], dependencies=[Depends(require_admin)]
)


class Problem(BaseModel):
    """What a 404 or a 409 answers."""

    detail: str


def _invalid(loc: tuple[str, ...], msg: str, value: Any) -> RequestValidationError:
    """A 422 shaped like FastAPI's own (the ``HTTPValidationError`` the document declares)."""
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": msg, "input": value}])


def _range(
    runtime: Runtime, start: date | None, end: date | None, default_days: int
) -> tuple[date, date]:
    end = end or runtime.clock().date()
    start = start or end - timedelta(days=default_days)
    if start > end:
        raise _invalid(("query", "from"), f"`from` ({start}) is after `to` ({end})", str(start))
    if (end - start).days > MAX_DAYS:
        raise _invalid(("query", "to"), f"the range may span at most {MAX_DAYS} days", str(end))
    return start, end


@asynccontextmanager
async def _reading(runtime: Runtime) -> AsyncIterator[Any]:
    async with snapshot(runtime.engine) as conn:
        yield await driver_connection(conn)


# --- KPIs --------------------------------------------------------------------------------


@kpis.get("/activity")
async def activity(
    runtime: RuntimeDep,
    start: FromQ = None,
    end: ToQ = None,
    period: Literal["day", "week", "month"] = "month",
) -> dict[str, Any]:
    """Active customers per period, with retention and churn against the period before."""
    start, end = _range(runtime, start, end, 365 if period == "month" else 90)
    async with _reading(runtime) as driver:
        rows = await queries.activity(driver, kind=period, start=start, end=end)
    return {"period": period, "from": start, "to": end, "periods": rows}


@kpis.get("/cohorts")
async def cohorts(
    runtime: RuntimeDep,
    start: FromQ = None,
    end: ToQ = None,
    period: Literal["week", "month"] = "month",
    periods: Annotated[int, Query(ge=1, le=52)] = 12,
) -> dict[str, Any]:
    """Cohort retention: customers first seen in a period, and the share active in each
    of the following ``periods`` periods."""
    start, end = _range(runtime, start, end, 365 if period == "month" else 84)
    async with _reading(runtime) as driver:
        rows = await queries.cohorts(driver, kind=period, start=start, end=end, periods=periods)
    return {"period": period, "from": start, "to": end, "cohorts": rows}


@kpis.get("/revenue")
async def revenue(
    runtime: RuntimeDep,
    start: FromQ = None,
    end: ToQ = None,
    period: Literal["day", "week", "month"] = "month",
) -> dict[str, Any]:
    """Revenue, orders, AOV, revenue per active customer and LTV to date per period."""
    start, end = _range(runtime, start, end, 365 if period == "month" else 90)
    async with _reading(runtime) as driver:
        rows = await queries.revenue(driver, kind=period, start=start, end=end)
    return {"period": period, "from": start, "to": end, "periods": rows}


@kpis.get("/customers")
async def customer_value(
    runtime: RuntimeDep,
    start: FromQ = None,
    end: ToQ = None,
    cohort: Literal["week", "month"] = "month",
) -> dict[str, Any]:
    """Repeat-purchase rate, revenue and LTV per customer, overall and per cohort
    (cohorts first seen between ``from`` and ``to``; all when omitted)."""
    if start and end and start > end:
        raise _invalid(("query", "from"), f"`from` ({start}) is after `to` ({end})", str(start))
    async with _reading(runtime) as driver:
        return await queries.customer_value(driver, kind=cohort, start=start, end=end)


@kpis.get("/satisfaction")
async def satisfaction(
    runtime: RuntimeDep, start: FromQ = None, end: ToQ = None, journey_id: str | None = None
) -> dict[str, Any]:
    """NPS and CSAT from ``Survey Answered`` events."""
    start, end = _range(runtime, start, end, 90)
    async with _reading(runtime) as driver:
        answer = await queries.satisfaction(driver, start=start, end=end, journey_id=journey_id)
    return {"from": start, "to": end, "journey_id": journey_id, **answer}


@kpis.get("/funnel")
async def funnel(
    runtime: RuntimeDep,
    start: FromQ = None,
    end: ToQ = None,
    journey_id: str | None = None,
    step_id: str | None = None,
    variant: str | None = None,
    channel: str | None = None,
    group_by: Annotated[
        str, Query(description="comma-separated: day, journey_id, step_id, variant, channel")
    ] = "journey_id",
) -> dict[str, Any]:
    """The messaging funnel (requested → sent → delivered → opened → clicked →
    converted, with deferrals, suppressions by reason, failures, bounces, unsubscribes)."""
    start, end = _range(runtime, start, end, 30)
    dims = [d.strip() for d in group_by.split(",") if d.strip()]
    unknown = sorted(set(dims) - set(queries.FUNNEL_DIMENSIONS))
    if unknown:
        raise _invalid(
            ("query", "group_by"),
            f"cannot group by {', '.join(unknown)}; "
            f"choose among {', '.join(queries.FUNNEL_DIMENSIONS)}",
            group_by,
        )
    filters = {"journey_id": journey_id, "step_id": step_id, "variant": variant, "channel": channel}
    async with _reading(runtime) as driver:
        rows = await queries.funnel(driver, start=start, end=end, filters=filters, group_by=dims)
    return {"from": start, "to": end, "group_by": dims, "filters": filters, "rows": rows}


@kpis.get("/uplift/{journey_id}")
async def uplift(
    journey_id: str,
    runtime: RuntimeDep,
    retention_days: Annotated[int, Query(ge=1, le=365)] = 30,
) -> dict[str, Any]:
    """Entrants against the holdout, on conversion and on retention."""
    async with _reading(runtime) as driver:
        return await queries.uplift(driver, journey_id=journey_id, retention_days=retention_days)


@kpis.get("/segments")
async def segments(
    runtime: RuntimeDep, start: FromQ = None, end: ToQ = None, segment_id: str | None = None
) -> dict[str, Any]:
    """Entries into and exits from segments per day."""
    start, end = _range(runtime, start, end, 30)
    async with _reading(runtime) as driver:
        rows = await queries.segment_flows(driver, start=start, end=end, segment_id=segment_id)
    return {"from": start, "to": end, "days": rows}


# --- experiments -------------------------------------------------------------------------


class ExperimentUpdate(NulFree):
    #: the variant the others are compared with (default: control, else a, else first)
    control: str = Field(min_length=1)


def _experiment(row: Any) -> dict[str, Any]:
    return {
        "journey_id": row[0],
        "journey_version": row[1],
        "step_id": row[2],
        "kind": "holdout" if row[2] == HOLDOUT_STEP else "split",
        "control": row[3],
        "verdict": row[4],
        "winner": row[5],
        "p_value": row[6],
        "result": orjson.loads(row[7]) if row[7] else None,
        "evaluated_at": row[8],
        "decision_id": row[9],
        "decided_at": row[10],
    }


_EXPERIMENT_COLUMNS = (
    "journey_id, journey_version, step_id, control, verdict, winner, p_value, "
    "result::text, evaluated_at, decision_id, decided_at"
)


@experiments_router.get("")
async def list_experiments(
    runtime: RuntimeDep, journey_id: str | None = None
) -> list[dict[str, Any]]:
    """Every split and holdout seen in ``journey.runs``, with its last verdict."""
    async with _reading(runtime) as driver:
        rows = await driver.fetch(
            f"SELECT {_EXPERIMENT_COLUMNS} FROM metrics.experiments "
            "WHERE $1::text IS NULL OR journey_id = $1 ORDER BY 1, 2, 3",
            journey_id,
        )
    return [_experiment(r) for r in rows]


@experiments_router.post("/evaluate")
async def evaluate_now(runtime: RuntimeDep) -> dict[str, int]:
    """Evaluate every experiment now (it also happens every ``evaluate_interval_s``)."""
    return {"decisions_enqueued": await runtime.evaluate()}


@experiments_router.get("/{journey_id}/{journey_version}/{step_id}")
async def get_experiment(
    journey_id: str,
    journey_version: VersionP,
    step_id: str,
    runtime: RuntimeDep,
    mde: Annotated[
        float | None,
        Query(
            gt=0,
            le=10,
            description="minimum detectable effect, relative to control's rate (0.1 = +10 %): "
            "adds `plan`, how many more users per arm the sequential test expects to need",
        ),
    ] = None,
    baseline: Annotated[
        float | None,
        Query(gt=0, lt=1, description="the base rate to plan from (default: control's so far)"),
    ] = None,
) -> dict[str, Any]:
    async with _reading(runtime) as driver:
        row = await driver.fetchrow(
            f"SELECT {_EXPERIMENT_COLUMNS} FROM metrics.experiments "
            "WHERE journey_id = $1 AND journey_version = $2 AND step_id = $3",
            journey_id,
            journey_version,
            step_id,
        )
    if row is None:
        raise HTTPException(
            404, detail=f"no experiment at step {step_id!r} of {journey_id!r} v{journey_version}"
        )
    answer = _experiment(row)
    if mde is not None:
        try:
            answer["plan"] = plan_experiment(
                answer["result"], mde=mde, policy=runtime.policy, baseline=baseline
            )
        except ValueError as exc:
            raise Invalid(str(exc), loc=("query", "mde")) from None
    return answer


@experiments_router.patch("/{journey_id}/{journey_version}/{step_id}")
async def update_experiment(
    journey_id: str,
    journey_version: VersionP,
    step_id: str,
    body: ExperimentUpdate,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Choose the variant the others are compared with (the sequential test's running
    minima start again), then evaluate at once."""
    async with runtime.engine.begin() as conn:
        driver = await driver_connection(conn)
        known = await driver.fetchval(
            "SELECT count(*) FROM metrics.experiment_counts WHERE journey_id = $1 "
            "AND journey_version = $2 AND step_id = $3 AND variant = $4",
            journey_id,
            journey_version,
            step_id,
            body.control,
        )
        if not known:
            raise _invalid(
                ("body", "control"), f"no variant {body.control!r} in this experiment", body.control
            )
        updated = await driver.fetchval(
            """
            UPDATE metrics.experiments SET control = $4, min_p_values = CASE
                    WHEN $4 IS DISTINCT FROM control THEN '{}'::jsonb ELSE min_p_values END
            WHERE journey_id = $1 AND journey_version = $2 AND step_id = $3 RETURNING 1
            """,
            journey_id,
            journey_version,
            step_id,
            body.control,
        )
    if updated is None:
        raise HTTPException(
            404, detail=f"no experiment at step {step_id!r} of {journey_id!r} v{journey_version}"
        )
    await runtime.evaluate()
    return await get_experiment(journey_id, journey_version, step_id, runtime)


# --- objectives --------------------------------------------------------------------------


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48]
    return f"{slug or 'objective'}-{uuid.uuid4().hex[:6]}"


async def _with_progress(
    driver: Any, runtime: Runtime, doc: goals.ObjectiveCreate
) -> dict[str, Any]:
    today = runtime.clock().date()
    end = min(today, doc.deadline)
    values = await goals.series(driver, doc, start=doc.start, end=max(end, doc.start))
    baseline = doc.baseline
    if baseline is None:
        before = shift_period(doc.period, period_start(doc.period, doc.start), -1)
        measured = await goals.series(driver, doc, start=before, end=before)
        baseline = measured[0][1] if measured else None
    return {**doc.model_dump(mode="json"), **goals.progress(doc, values, baseline)}


@objectives_router.post(
    "",
    status_code=201,
    responses={409: {"description": "an objective has this id", "model": Problem}},
)
async def create_objective(body: goals.ObjectiveCreate, runtime: RuntimeDep) -> dict[str, Any]:
    """Store a SMART objective; answers with its progress."""
    if body.start < MIN_OBJECTIVE_START:
        raise _invalid(
            ("body", "start"), f"an objective starts on {MIN_OBJECTIVE_START} or later", body.start
        )
    if (body.deadline - body.start).days > MAX_DAYS:
        raise _invalid(
            ("body", "deadline"), f"an objective may span at most {MAX_DAYS} days", body.deadline
        )
    doc = body.model_copy(update={"id": body.id or _slug(body.name)})
    async with runtime.engine.begin() as conn:
        driver = await driver_connection(conn)
        inserted = await driver.fetchval(
            "INSERT INTO metrics.objectives (id, document) VALUES ($1, $2::jsonb) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            doc.id,
            doc.model_dump_json(),
        )
        if inserted is None:
            raise HTTPException(409, detail=f"objective {doc.id!r} already exists")
    async with _reading(runtime) as driver:
        return await _with_progress(driver, runtime, doc)


@objectives_router.get("")
async def list_objectives(runtime: RuntimeDep) -> list[dict[str, Any]]:
    async with _reading(runtime) as driver:
        rows = await driver.fetch("SELECT document::text FROM metrics.objectives ORDER BY id")
        return [
            await _with_progress(driver, runtime, goals.ObjectiveCreate.model_validate_json(r[0]))
            for r in rows
        ]


@objectives_router.get("/{objective_id}")
async def get_objective(objective_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    async with _reading(runtime) as driver:
        raw = await driver.fetchval(
            "SELECT document::text FROM metrics.objectives WHERE id = $1", objective_id
        )
        if raw is None:
            raise HTTPException(404, detail=f"no objective {objective_id!r}")
        return await _with_progress(driver, runtime, goals.ObjectiveCreate.model_validate_json(raw))


@objectives_router.delete("/{objective_id}", status_code=204)
async def delete_objective(objective_id: str, runtime: RuntimeDep) -> Response:
    async with runtime.engine.begin() as conn:
        driver = await driver_connection(conn)
        deleted = await driver.fetchval(
            "DELETE FROM metrics.objectives WHERE id = $1 RETURNING 1", objective_id
        )
    if deleted is None:
        raise HTTPException(404, detail=f"no objective {objective_id!r}")
    return Response(status_code=204)


# --- report ------------------------------------------------------------------------------


@report_router.get("")
async def report_data(runtime: RuntimeDep, start: FromQ = None, end: ToQ = None) -> dict[str, Any]:
    """Everything the report page draws, in one answer (default: the last 12 months)."""
    start, end = _range(runtime, start, end, 365)
    async with _reading(runtime) as driver:
        data: dict[str, Any] = {
            "generated_at": runtime.clock(),
            "from": start,
            "to": end,
            "funnel": await queries.funnel(
                driver,
                start=end - timedelta(days=30),
                end=end,
                filters={},
                group_by=["journey_id"],
            ),
            "cohorts": await queries.cohorts(
                driver, kind="month", start=start, end=end, periods=12
            ),
            "activity": await queries.activity(driver, kind="month", start=start, end=end),
            "revenue": await queries.revenue(driver, kind="month", start=start, end=end),
            "customers": await queries.customer_value(driver, kind="month", start=None, end=None),
            "satisfaction": await queries.satisfaction(
                driver, start=end - timedelta(days=90), end=end, journey_id=None
            ),
        }
        rows = await driver.fetch(
            f"SELECT {_EXPERIMENT_COLUMNS} FROM metrics.experiments ORDER BY 1, 2, 3"
        )
        data["experiments"] = [_experiment(r) for r in rows]
        docs = await driver.fetch("SELECT document::text FROM metrics.objectives ORDER BY id")
        data["objectives"] = [
            await _with_progress(driver, runtime, goals.ObjectiveCreate.model_validate_json(r[0]))
            for r in docs
        ]
    return data


async def report_page() -> FileResponse:
    """The report: static HTML and a vendored chart library; the data comes from
    ``/v1/report`` with the token the page asks for (kept in the browser)."""
    return FileResponse(STATIC / "report.html", media_type="text/html")


async def static_file(name: str) -> FileResponse:
    allowed = {"report.js": "text/javascript", "chart.umd.min.js": "text/javascript"}
    if name not in allowed:
        raise HTTPException(404, detail=f"no file {name!r}")
    return FileResponse(STATIC / name, media_type=allowed[name])


def create_app(settings: MetricsSettings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or get_settings()
    app = create_service_app(
        title="Tenure metrics",
        description="Retention KPIs, messaging funnel, experiments and objectives.",
        version="1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.admin_tokens = TokenDigests(settings.metrics.admin_token_digests)
    for router in (kpis, experiments_router, objectives_router, report_router):
        app.include_router(router)
    app.add_api_route(
        "/report", report_page, methods=["GET"], tags=["report"], response_class=HTMLResponse
    )
    app.add_api_route(
        "/static/{name}",
        static_file,
        methods=["GET"],
        tags=["report"],
        response_class=Response,
        responses={200: {"content": {"text/javascript": {"schema": {"type": "string"}}}}},
    )
    return app
