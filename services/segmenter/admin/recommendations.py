"""Recommendations: a customer's list with why, the recompute, and the catalogue entries
the model reads (``/v1/products``)."""

from __future__ import annotations

from typing import Any, Literal

from services.segmenter.errors import Conflict, NotFound
from services.segmenter.recommend.model import PURCHASE
from services.segmenter.recommend_job import options_from, recompute_recommendations
from services.segmenter.repository import recommendations as store
from services.segmenter.runtime import Runtime
from services.segmenter.schemas import (
    BecausePublic,
    InteractionPublic,
    ProductPublic,
    ProductUpdate,
    RecommendationPublic,
    RecommendationsPublic,
    RecomputePublic,
)

KINDS: dict[int, Literal["purchase", "view"]] = {0: "purchase", 1: "view"}


async def get_recommendations(runtime: Runtime, customer_id: str) -> RecommendationsPublic:
    """The stored list, each item with the purchases and views it came from."""
    async with runtime.engine.connect() as conn:
        history = await store.customer_interactions(conn, customer_id=customer_id)
        lists = await store.load_recommendations(conn, ids=[customer_id])
        computed_at = await store.computed_at(conn, customer_id=customer_id)
    if not history and customer_id not in lists:
        raise NotFound(f"no purchases, views or recommendations for {customer_id!r}")
    seen: dict[str, Any] = {}
    for row in history:
        # a purchase explains better than a view of the same product
        if row[0] not in seen or row[2] == PURCHASE:
            seen[row[0]] = row
    # the stored items are as ``profiles`` carries them (camelCase, shared.events.profiles)
    items = [
        RecommendationPublic(
            product_id=item["productId"],
            score=item["score"],
            source=item["source"],
            because=[
                BecausePublic(
                    product_id=p, kind=KINDS[seen[p][2]], count=seen[p][3], last_at=seen[p][4]
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


async def recompute(runtime: Runtime) -> RecomputePublic:
    """Refit the item model and recompute every list; :class:`Conflict` while another
    process recomputes."""
    report = await recompute_recommendations(
        runtime.engine,
        now=runtime.clock(),
        options=options_from(runtime.settings.segmenter),
        on_commit=runtime.relay.notify,
    )
    if report is None:
        raise Conflict("recommendations are being recomputed by another process")
    return RecomputePublic(
        computed_at=report.computed_at,
        customers=report.customers,
        products=report.products,
        interactions=report.interactions,
        changed=report.changed,
        seconds=round(report.seconds, 3),
        phases={k: round(v, 3) for k, v in report.phases.items()},
    )


async def put_product(runtime: Runtime, product_id: str, body: ProductUpdate) -> ProductPublic:
    async with runtime.engine.begin() as conn:
        await store.set_product(
            conn,
            product_id=product_id,
            category=body.category,
            consumable=body.consumable,
            name=body.name,
        )
        row = await store.get_product(conn, product_id=product_id)
    assert row is not None  # just written
    return _product(row)


async def get_product(runtime: Runtime, product_id: str) -> ProductPublic:
    async with runtime.engine.connect() as conn:
        row = await store.get_product(conn, product_id=product_id)
    if row is None:
        raise NotFound(f"no product {product_id!r}")
    return _product(row)


def _product(row: Any) -> ProductPublic:
    return ProductPublic(product_id=row[0], category=row[1], consumable=row[2], name=row[3])
