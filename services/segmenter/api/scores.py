"""``/v1/scores``: refitting the churn / LTV models, as of now or of a past day."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.segmenter.api.deps import RuntimeDep
from services.segmenter.schemas import FitReport, LastFitPublic
from services.segmenter.scoring_job import last_fit, scoring_time
from shared.http.admin import ADMIN
from shared.http.problems import Invalid, NotFound, problems
from shared.validation import BoundedDate

router = APIRouter(prefix="/v1/scores", tags=["scores"], dependencies=ADMIN)

AsOf = Annotated[
    BoundedDate | None,
    Query(
        description="score as of the end of this UTC day (YYYY-MM-DD): an imported history "
        "as of its own end, or a backtest; purchases and activity after it are ignored. "
        "Default: now."
    ),
]


@router.post("/refit", response_model=FitReport, responses=problems(409, 422))
async def refit(runtime: RuntimeDep, as_of: AsOf = None) -> FitReport:
    """Refit the churn / LTV models and rescore every customer, now or as of ``as_of``
    (409 while another process refits; 422 for a day after today)."""
    try:
        scoring_time(runtime.clock(), as_of)
    except ValueError as exc:
        raise Invalid(str(exc), loc=("query", "as_of")) from None
    return await runtime.refit(as_of=as_of)


@router.get("/fit", response_model=LastFitPublic, responses=problems(404))
async def latest_fit(runtime: RuntimeDep, as_of: AsOf = None) -> LastFitPublic:
    """The latest refit (or the latest scored as of ``as_of``): the churn definition, the
    method used and why, each candidate's cross-validated AUC (mean ± spread), the
    winner's calibration per decile and its fit per RFM tier."""
    found = await last_fit(runtime.engine, as_of=as_of)
    if found is None:
        if as_of is not None:
            raise NotFound(
                f"no refit as of {as_of.isoformat()}: POST /v1/scores/refit?as_of="
                f"{as_of.isoformat()}"
            )
        raise NotFound("no refit yet: POST /v1/scores/refit")
    return found
