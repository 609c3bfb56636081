"""``/v1/recommendations`` (a customer's list with why, recompute now) and
``/v1/products`` (the catalogue entries the model reads: category, consumable)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from services.segmenter.admin import recommendations
from services.segmenter.api.deps import RuntimeDep
from services.segmenter.schemas import (
    ProductPublic,
    ProductUpdate,
    RecommendationsPublic,
    RecomputePublic,
)
from shared.http.admin import ADMIN
from shared.http.problems import problems

router = APIRouter(tags=["recommendations"], dependencies=ADMIN)
Id = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]


@router.get(
    "/v1/recommendations/{customer_id:path}",
    response_model=RecommendationsPublic,
    responses=problems(404),
)
async def get_recommendations(customer_id: Id, runtime: RuntimeDep) -> RecommendationsPublic:
    """A customer's recommendations, each with the purchases and views it came from."""
    return await recommendations.get_recommendations(runtime, customer_id)


@router.post(
    "/v1/recommendations/recompute", response_model=RecomputePublic, responses=problems(409)
)
async def recompute(runtime: RuntimeDep) -> RecomputePublic:
    """Refit the item model and recompute every customer's list now."""
    return await recommendations.recompute(runtime)


@router.put("/v1/products/{product_id}", response_model=ProductPublic)
async def put_product(product_id: Id, body: ProductUpdate, runtime: RuntimeDep) -> ProductPublic:
    """Set a catalogue entry: its category, and whether it is ``consumable`` (bought
    again: it may be recommended to those who bought it)."""
    return await recommendations.put_product(runtime, product_id, body)


@router.get("/v1/products/{product_id}", response_model=ProductPublic, responses=problems(404))
async def get_product(product_id: Id, runtime: RuntimeDep) -> ProductPublic:
    return await recommendations.get_product(runtime, product_id)
