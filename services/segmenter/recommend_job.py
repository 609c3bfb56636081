"""Recompute every customer's recommendations: read the interactions, fit the item model
in a worker thread, score customers chunk by chunk, store the lists that changed and
publish a ``profiles`` message for each of those customers.

One process at a time (a session advisory lock held for the whole run, several
transactions); a second caller gets ``None``. Each chunk's writes and messages commit
together, so a run stopped half-way leaves every customer either with the old list
(and the old message) or the new one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from services.segmenter.recommend.model import (
    SOURCE_NAMES,
    Catalogue,
    Interactions,
    ItemModel,
    Params,
    Recommendations,
    fit,
    recommend,
)
from services.segmenter.repository import recommendations as store
from services.segmenter.repository.outbox import publish_profiles
from shared.db.engine import long_statements
from shared.db.locks import lock_name, session_lock
from shared.db.transient import is_transient_db_error
from shared.retry import retrying
from shared.stopping import PeriodicJob

log = logging.getLogger(__name__)

RECOMMEND_LOCK = lock_name("segmenter", "recommendations")


@dataclass(frozen=True)
class RecomputeOptions:
    params: Params = field(default_factory=Params)
    top_n: int = 10
    reasons: int = 3
    chunk: int = 50_000


@dataclass(frozen=True)
class RecomputeReport:
    computed_at: datetime
    customers: int
    products: int
    interactions: int
    changed: int
    seconds: float
    phases: dict[str, float]


@dataclass(frozen=True)
class Prepared:
    """The arrays the model reads, and the ids to write back."""

    interactions: Interactions
    catalogue: Catalogue
    customer_ids: list[str]
    product_ids: list[str]


def prepare(
    rows: store.InteractionRows, catalogue: store.CatalogueRows, *, now: datetime
) -> Prepared:
    """Product keys become codes 0..n-1 (positions in the catalogue), categories codes."""
    codes = np.searchsorted(catalogue.product_key, rows.product_key)
    category_codes: dict[str, int] = {}
    category = np.array(
        [
            -1 if c is None else category_codes.setdefault(c, len(category_codes))
            for c in catalogue.category
        ],
        dtype=np.int64,
    )
    interactions = Interactions(
        customer=rows.customer,
        product=codes.astype(np.int64),
        kind=rows.kind,
        count=rows.count,
        age_days=(now.timestamp() - rows.last_at) / 86_400.0,
        n_customers=len(rows.customer_ids),
        n_products=len(catalogue.product_id),
    )
    return Prepared(
        interactions=interactions,
        catalogue=Catalogue(category=category, consumable=catalogue.consumable),
        customer_ids=rows.customer_ids,
        product_ids=catalogue.product_id,
    )


def chunk_of(interactions: Interactions, start: int, stop: int) -> Interactions:
    """The rows of customers ``start..stop-1`` (interactions are in customer order)."""
    lo, hi = np.searchsorted(interactions.customer, [start, stop])
    return Interactions(
        customer=interactions.customer[lo:hi],
        product=interactions.product[lo:hi],
        kind=interactions.kind[lo:hi],
        count=interactions.count[lo:hi],
        age_days=interactions.age_days[lo:hi],
        n_customers=interactions.n_customers,
        n_products=interactions.n_products,
    )


def items_json(
    recs: Recommendations, customer_ids: Sequence[str], product_ids: Sequence[str]
) -> list[tuple[str, bytes]]:
    """Each customer's list as the JSON ``profiles`` carries (``Recommendation`` fields)."""
    out: list[tuple[str, bytes]] = []
    customers = recs.customer.tolist()
    products = recs.product.tolist()
    scores = np.round(recs.score, 4).tolist()
    sources = recs.source.tolist()
    because = recs.because.tolist()
    i, n = 0, len(customers)
    while i < n:
        code = customers[i]
        items = []
        while i < n and customers[i] == code:
            items.append(
                {
                    "productId": product_ids[products[i]],
                    "score": scores[i],
                    "because": [product_ids[b] for b in because[i] if b >= 0],
                    "source": SOURCE_NAMES[sources[i]],
                }
            )
            i += 1
        out.append((customer_ids[code], orjson.dumps(items)))
    return out


async def recompute_recommendations(
    engine: AsyncEngine,
    *,
    now: datetime,
    options: RecomputeOptions = RecomputeOptions(),
    on_commit: Callable[[], None] | None = None,
) -> RecomputeReport | None:
    """Recompute and publish; ``None`` when another process is at it."""
    async with session_lock(engine, RECOMMEND_LOCK) as held:
        if not held:
            return None
        return await _recompute(engine, now=now, options=options, on_commit=on_commit)


async def _recompute(
    engine: AsyncEngine,
    *,
    now: datetime,
    options: RecomputeOptions,
    on_commit: Callable[[], None] | None,
) -> RecomputeReport:
    started = time.perf_counter()
    async with engine.connect() as conn, conn.begin():
        await long_statements(conn)
        catalogue = await store.read_catalogue(conn)
        rows = await store.read_interactions(conn)
    read_s = time.perf_counter() - started
    prepared = prepare(rows, catalogue, now=now)
    model: ItemModel = await asyncio.to_thread(
        fit, prepared.interactions, prepared.catalogue, options.params
    )
    fit_s = time.perf_counter() - started - read_s
    score_s = write_s = 0.0
    changed = 0
    n_customers = prepared.interactions.n_customers
    for start in range(0, n_customers, options.chunk):
        stop = min(start + options.chunk, n_customers)
        t0 = time.perf_counter()
        part = chunk_of(prepared.interactions, start, stop)
        recs = await asyncio.to_thread(
            recommend,
            model,
            part,
            customers=np.arange(start, stop, dtype=np.int64),
            n=options.top_n,
            reasons=options.reasons,
        )
        payload = items_json(recs, prepared.customer_ids, prepared.product_ids)
        t1 = time.perf_counter()
        # a chunk's transaction can lose a deadlock with a consumer batch over a profile
        # row (it locks and bumps the rows of customers whose list changed): try again
        ids: list[str] = await retrying(
            what="writing a chunk of recommendations",
            retry_on=is_transient_db_error,
            attempts=5,
        )(_write_chunk, engine, payload, now)
        if on_commit is not None:
            on_commit()
        changed += len(ids)
        score_s += t1 - t0
        write_s += time.perf_counter() - t1
    seconds = time.perf_counter() - started
    log.info(
        "recommendations: %d customers, %d products, %d changed in %.1f s",
        n_customers,
        len(prepared.product_ids),
        changed,
        seconds,
    )
    return RecomputeReport(
        computed_at=now,
        customers=n_customers,
        products=len(prepared.product_ids),
        interactions=len(prepared.interactions.customer),
        changed=changed,
        seconds=seconds,
        phases={"read": read_s, "fit": fit_s, "score": score_s, "write": write_s},
    )


async def _write_chunk(
    engine: AsyncEngine, payload: list[tuple[str, bytes]], now: datetime
) -> list[str]:
    async with engine.begin() as conn:
        await long_statements(conn)
        ids = await store.write_recommendations(conn, rows=payload, now=now)
        # customers erased or merged away since the read have no profile: no message
        await publish_profiles(conn, ids=ids, now=now)
    return ids


def options_from(group: Any) -> RecomputeOptions:
    """The options the segmenter's settings group (``TENURE_SEGMENTER_RECOMMEND_*``) sets."""
    return RecomputeOptions(
        params=Params(
            similarity=group.recommend_similarity, half_life_days=group.recommend_half_life_days
        ),
        top_n=group.recommend_top_n,
    )


def scheduled_recompute(
    *,
    engine: AsyncEngine,
    group: Any,
    clock: Callable[[], datetime],
    on_commit: Callable[[], None],
) -> PeriodicJob:
    """The recompute every ``recommend_interval_s`` (the lock makes one replica do it)."""

    async def run() -> None:
        await recompute_recommendations(
            engine, now=clock(), options=options_from(group), on_commit=on_commit
        )

    return PeriodicJob(run, name="recommendations", interval_s=group.recommend_interval_s)
