"""``/v1/recommendations`` (a customer's list with why, recompute now) and
``/v1/products`` (the catalogue entries the model reads: category, consumable)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.params import Depends
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from services.segmenter.recommend import store
from services.segmenter.recommend.job import (
    options_from,
    recompute_recommendations,
    report_json,
)
from services.segmenter.recommend.model import PURCHASE
from services.segmenter.schemas import Problem
from shared.db.driver import fetch

KINDS = {0: "purchase", 1: "view"}
ProductId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ProductIn(_Camel):
    category: str | None = Field(default=None, min_length=1, max_length=200)
    consumable: bool = False
    name: str | None = Field(default=None, min_length=1, max_length=500)


class ProductPublic(ProductIn):
    product_id: str


class Because(_Camel):
    product_id: str
    kind: str
    count: int
    last_at: datetime


class ItemPublic(_Camel):
    product_id: str
    score: float
    source: str
    because: list[Because]


class InteractionPublic(_Camel):
    product_id: str
    category: str | None
    kind: str
    count: int
    last_at: datetime


class RecommendationsPublic(_Camel):
    customer_id: str
    computed_at: datetime | None
    items: list[ItemPublic]
    #: what the list was computed from: the customer's purchases and views, newest first
    history: list[InteractionPublic]


def build_router(dependencies: Sequence[Depends]) -> APIRouter:
    router = APIRouter(tags=["recommendations"], dependencies=list(dependencies))

    @router.get(
        "/v1/recommendations/{customer_id}",
        response_model=RecommendationsPublic,
        responses={404: {"description": "no purchases, views or list", "model": Problem}},
    )
    async def get_recommendations(
        customer_id: ProductId, request: Request
    ) -> RecommendationsPublic:
        """A customer's recommendations, each with the purchases and views it came from."""
        runtime = request.app.state.runtime
        async with runtime.engine.connect() as conn:
            history = await store.customer_interactions(conn, customer_id=customer_id)
            lists = await store.load_recommendations(conn, ids=[customer_id])
            computed = await fetch(
                conn,
                "SELECT computed_at FROM segmenter.recommendations WHERE customer_id = $1",
                customer_id,
            )
            computed_at = computed[0][0] if computed else None
        if not history and customer_id not in lists:
            raise HTTPException(
                404, detail=f"no purchases, views or recommendations for {customer_id!r}"
            )
        seen: dict[str, Any] = {}
        for row in history:
            # a purchase explains better than a view of the same product
            if row[0] not in seen or row[2] == PURCHASE:
                seen[row[0]] = row
        items = [
            ItemPublic(
                product_id=item["productId"],
                score=item["score"],
                source=item["source"],
                because=[
                    Because(
                        product_id=p,
                        kind=KINDS[seen[p][2]],
                        count=seen[p][3],
                        last_at=seen[p][4],
                    )
                    for p in item["because"]
                    if p in seen
                ],
            )
            for item in lists.get(customer_id, [])
        ]
        return RecommendationsPublic(
            customer_id=customer_id,
            computed_at=computed_at,
            items=items,
            history=[
                InteractionPublic(
                    product_id=r[0], category=r[1], kind=KINDS[r[2]], count=r[3], last_at=r[4]
                )
                for r in history
            ],
        )

    @router.post(
        "/v1/recommendations/recompute",
        responses={409: {"description": "another process is recomputing now", "model": Problem}},
    )
    async def recompute(request: Request) -> dict[str, Any]:
        """Refit the item model and recompute every customer's list now."""
        runtime = request.app.state.runtime
        report = await recompute_recommendations(
            runtime.engine,
            now=runtime.clock(),
            options=options_from(runtime.settings.segmenter),
            on_commit=runtime.relay.notify,
        )
        if report is None:
            raise HTTPException(
                409, detail="recommendations are being recomputed by another process"
            )
        return report_json(report)

    @router.put("/v1/products/{product_id}", response_model=ProductPublic)
    async def put_product(
        product_id: ProductId, body: ProductIn, request: Request
    ) -> ProductPublic:
        """Set a catalogue entry: its category, and whether it is ``consumable`` (bought
        again: it may be recommended to those who bought it)."""
        async with request.app.state.runtime.engine.begin() as conn:
            await store.set_product(
                conn,
                product_id=product_id,
                category=body.category,
                consumable=body.consumable,
                name=body.name,
            )
            row = await store.get_product(conn, product_id=product_id)
        assert row is not None  # just written
        return ProductPublic(product_id=row[0], category=row[1], consumable=row[2], name=row[3])

    @router.get(
        "/v1/products/{product_id}",
        response_model=ProductPublic,
        responses={404: {"description": "no such product", "model": Problem}},
    )
    async def get_product(product_id: ProductId, request: Request) -> ProductPublic:
        async with request.app.state.runtime.engine.connect() as conn:
            row = await store.get_product(conn, product_id=product_id)
        if row is None:
            raise HTTPException(404, detail=f"no product {product_id!r}")
        return ProductPublic(product_id=row[0], category=row[1], consumable=row[2], name=row[3])

    return router
