"""A simulated shop with known taste clusters, for the recommendation tests and the bench.

Products belong to one taste cluster each and to a category drawn independently of the
clusters (so the category fallback is no oracle). Product popularity is Zipf-like over the
whole catalogue. Each customer belongs to a cluster and buys from it with probability
``loyalty``, otherwise from the whole catalogue by popularity; they also view products of
their cluster. The last purchase of each customer is held out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.segmenter.recommend.model import (
    PURCHASE,
    VIEW,
    Catalogue,
    IntArray,
    Interactions,
)


@dataclass(frozen=True)
class Shop:
    train: Interactions
    catalogue: Catalogue
    #: per customer code, the held-out product (-1 when the customer has none)
    held_out: IntArray
    cluster_of_product: IntArray


def simulate(
    rng: np.random.Generator,
    *,
    customers: int = 3_000,
    clusters: int = 12,
    products_per_cluster: int = 40,
    categories: int = 8,
    purchases: tuple[int, int] = (3, 10),
    views: tuple[int, int] = (0, 6),
    loyalty: float = 0.8,
    days: float = 365.0,
) -> Shop:
    n_products = clusters * products_per_cluster
    cluster_of_product = np.repeat(np.arange(clusters), products_per_cluster)
    category = rng.integers(0, categories, n_products)
    popularity = 1.0 / np.arange(1, n_products + 1) ** 0.8
    popularity = popularity[rng.permutation(n_products)]
    global_p = popularity / popularity.sum()
    cluster_p = []
    for c in range(clusters):
        mine = np.where(cluster_of_product == c, popularity, 0.0)
        cluster_p.append(mine / mine.sum())

    rows_c: list[int] = []
    rows_p: list[int] = []
    rows_k: list[int] = []
    rows_t: list[float] = []
    held_out = np.full(customers, -1, dtype=np.int64)
    taste = rng.integers(0, clusters, customers)
    for cust in range(customers):
        k = int(rng.integers(purchases[0], purchases[1] + 1))
        from_cluster = rng.random(k) < loyalty
        bought = np.where(
            from_cluster,
            rng.choice(n_products, k, p=cluster_p[taste[cust]]),
            rng.choice(n_products, k, p=global_p),
        )
        times = np.sort(rng.uniform(0.0, days, k))
        held_out[cust] = bought[-1]
        # a product bought again before is no test of discovery: keep those in training only
        seen = set(bought[:-1].tolist())
        if bought[-1] in seen:
            held_out[cust] = -1
        for p, t in zip(bought[:-1], times[:-1], strict=True):
            rows_c.append(cust)
            rows_p.append(int(p))
            rows_k.append(PURCHASE)
            rows_t.append(days - t)
        v = int(rng.integers(views[0], views[1] + 1))
        for p in rng.choice(n_products, v, p=cluster_p[taste[cust]]):
            rows_c.append(cust)
            rows_p.append(int(p))
            rows_k.append(VIEW)
            rows_t.append(float(rng.uniform(0.0, days)))
    customer_of = np.asarray(rows_c, dtype=np.int64)
    product_of = np.asarray(rows_p, dtype=np.int64)
    kind_of = np.asarray(rows_k, dtype=np.int8)
    age = np.asarray(rows_t)
    # one row per (customer, product, kind): count them, keep the most recent
    key = (customer_of * n_products + product_of) * 2 + kind_of
    order = np.lexsort((age, key))
    key, age = key[order], age[order]
    uniq, first, counts = np.unique(key, return_index=True, return_counts=True)
    train = Interactions(
        customer=uniq // 2 // n_products,
        product=uniq // 2 % n_products,
        kind=(uniq % 2).astype(np.int8),
        count=counts.astype(np.int64),
        age_days=age[first],
        n_customers=customers,
        n_products=n_products,
    )
    return Shop(
        train=train,
        catalogue=Catalogue(
            category=category.astype(np.int64), consumable=np.zeros(n_products, dtype=bool)
        ),
        held_out=held_out,
        cluster_of_product=cluster_of_product,
    )
