"""``/v1/scores``: refitting the churn / LTV models."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from services.segmenter.api.deps import RuntimeDep
from services.segmenter.schemas import FitReport, LastFitPublic, Problem
from services.segmenter.scoring_job import last_fit
from shared.http.admin import ADMIN

router = APIRouter(prefix="/v1/scores", tags=["scores"], dependencies=ADMIN)


@router.post(
    "/refit",
    response_model=FitReport,
    responses={
        409: {"description": "another replica or worker is refitting now", "model": Problem}
    },
)
async def refit(runtime: RuntimeDep) -> FitReport:
    """Refit the churn / LTV models now and rescore every customer."""
    return await runtime.refit()


@router.get("/fit", response_model=LastFitPublic, responses={404: {"description": "never fitted"}})
async def latest_fit(runtime: RuntimeDep) -> LastFitPublic:
    """The latest refit: the churn definition, the method used and why, and each churn
    candidate's backtest (AUC, Brier score, sample sizes)."""
    found = await last_fit(runtime.engine)
    if found is None:
        raise HTTPException(404, detail="no refit yet: POST /v1/scores/refit")
    return found
