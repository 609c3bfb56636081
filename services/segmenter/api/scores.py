"""``/v1/scores``: refitting the churn / LTV models."""

from __future__ import annotations

from fastapi import APIRouter

from services.segmenter.api.deps import RuntimeDep
from services.segmenter.errors import NotFound
from services.segmenter.schemas import FitReport, LastFitPublic
from services.segmenter.scoring_job import last_fit
from shared.http.admin import ADMIN
from shared.http.problems import problems

router = APIRouter(prefix="/v1/scores", tags=["scores"], dependencies=ADMIN)


@router.post(
    "/refit",
    response_model=FitReport,
    responses=problems(409),
)
async def refit(runtime: RuntimeDep) -> FitReport:
    """Refit the churn / LTV models now and rescore every customer."""
    return await runtime.refit()


@router.get("/fit", response_model=LastFitPublic, responses=problems(404))
async def latest_fit(runtime: RuntimeDep) -> LastFitPublic:
    """The latest refit: the churn definition, the method used and why, and each churn
    candidate's backtest (AUC, Brier score, sample sizes)."""
    found = await last_fit(runtime.engine)
    if found is None:
        raise NotFound("no refit yet: POST /v1/scores/refit")
    return found
