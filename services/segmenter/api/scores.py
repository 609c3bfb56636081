"""``/v1/scores``: refitting the churn / LTV models."""

from __future__ import annotations

from fastapi import APIRouter

from services.segmenter.api.deps import ADMIN, RuntimeDep
from services.segmenter.schemas import FitReport, Problem

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
