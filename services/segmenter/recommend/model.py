"""Item-to-item recommendations from purchase and view history.

Pure numpy / scipy.sparse: the job reads the interactions table into arrays of integer
codes, fits an :class:`ItemModel` and asks :func:`recommend` for each chunk of customers.

The model (the classic Amazon item-to-item scheme, Linden, Smith & York 2003):

- each interaction (customer, product, kind) weighs ``kind weight × (1 + log count) ×
  0.5 ** (age / half-life)``: purchases count more than views, recent more than old;
- item similarity is computed on those weighted customer vectors, ``cosine`` (with a
  shrinkage term that damps pairs seen together by few customers) or ``lift`` (how much
  more often two products share a customer than chance would say); only the ``neighbours``
  most similar products of each product are kept, pairs shared by fewer than
  ``min_support`` customers are dropped;
- a customer's score for product ``j`` is ``Σ_i w(customer, i) × sim(i, j)``; the products
  ``i`` that contributed most are the recommendation's ``because``;
- purchased products are never recommended again unless the catalogue marks them
  consumable; viewed ones may be (that is the point of a browse reminder);
- a customer with too few item-based candidates (a new customer, a cold product) is
  filled up from the popularity of the categories they touched, then overall.

Everything is vectorised per chunk of customers: memory follows the chunk, not the base.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import sparse

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

PURCHASE: int = 0
VIEW: int = 1

#: ``source`` of a recommendation: from the customer's items, or the popularity fallback
SIMILAR: int = 0
POPULAR: int = 1
SOURCE_NAMES = ("similar", "popular")

Similarity = Literal["cosine", "lift"]


@dataclass(frozen=True)
class Params:
    similarity: Similarity = "cosine"
    half_life_days: float = 90.0
    purchase_weight: float = 1.0
    view_weight: float = 0.25
    neighbours: int = 40
    min_support: int = 2
    shrink: float = 5.0
    #: item columns per block when computing co-occurrence (bounds memory)
    block: int = 2_048


@dataclass(frozen=True)
class Interactions:
    """One row per (customer, product, kind), customers and products as codes."""

    customer: IntArray
    product: IntArray
    kind: npt.NDArray[np.int8]
    count: IntArray
    age_days: FloatArray
    n_customers: int
    n_products: int

    def __post_init__(self) -> None:
        n = len(self.customer)
        for name in ("product", "kind", "count", "age_days"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, customer {n}")

    def weights(self, params: Params) -> FloatArray:
        kind_weight = np.where(self.kind == PURCHASE, params.purchase_weight, params.view_weight)
        decay = np.exp2(-np.maximum(self.age_days, 0.0) / params.half_life_days)
        return kind_weight * (1.0 + np.log(np.maximum(self.count, 1))) * decay

    def matrix(self, params: Params) -> sparse.csr_matrix:
        """Customers × products, weights summed over kinds."""
        return sparse.csr_matrix(
            (self.weights(params), (self.customer, self.product)),
            shape=(self.n_customers, self.n_products),
        )

    def purchased(self) -> sparse.csr_matrix:
        bought = self.kind == PURCHASE
        return sparse.csr_matrix(
            (
                np.ones(int(bought.sum()), dtype=np.int8),
                (self.customer[bought], self.product[bought]),
            ),
            shape=(self.n_customers, self.n_products),
        )


@dataclass(frozen=True)
class Catalogue:
    """Per product code: its category code (-1 unknown) and whether it is consumable."""

    category: IntArray
    consumable: BoolArray

    @classmethod
    def unknown(cls, n_products: int) -> Catalogue:
        return cls(
            category=np.full(n_products, -1, dtype=np.int64),
            consumable=np.zeros(n_products, dtype=bool),
        )


@dataclass(frozen=True)
class ItemModel:
    #: products × products: row i holds the most similar products of i (source → target)
    neighbours: sparse.csr_matrix
    #: recency-weighted purchases (views where nothing was bought) per product
    popularity: FloatArray
    catalogue: Catalogue
    params: Params = field(default_factory=Params)

    @property
    def n_products(self) -> int:
        return int(self.neighbours.shape[0])


def fit(interactions: Interactions, catalogue: Catalogue, params: Params = Params()) -> ItemModel:
    if len(catalogue.category) != interactions.n_products:
        raise ValueError("the catalogue must have one entry per product code")
    x = interactions.matrix(params).tocsc()
    support = (x > 0).astype(np.float64).tocsc()
    n_customers = max(interactions.n_customers, 1)
    counts = np.asarray(support.sum(axis=0)).ravel()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
    blocks = []
    for start in range(0, interactions.n_products, params.block):
        stop = min(start + params.block, interactions.n_products)
        co = (support.T @ support[:, start:stop]).tocsc()  # customers shared
        if params.similarity == "cosine":
            sim = (x.T @ x[:, start:stop]).tocsc()
            sim = _align(sim, co)
            denom_rows = norms[sim.indices]
            denom_cols = np.repeat(norms[start:stop], np.diff(sim.indptr))
            shared = co.data
            sim.data = (
                sim.data / (denom_rows * denom_cols + 1e-12) * shared / (shared + params.shrink)
            )
        else:
            sim = co.copy()
            expected = counts[sim.indices] * np.repeat(counts[start:stop], np.diff(sim.indptr))
            sim.data = sim.data * n_customers / np.maximum(expected, 1e-12)
            sim.data *= co.data / (co.data + params.shrink)
        keep = co.data >= params.min_support
        rows = sim.indices
        cols = np.repeat(np.arange(start, stop), np.diff(sim.indptr))
        keep &= rows != cols
        blocks.append(_top_per_column(rows[keep], cols[keep], sim.data[keep], params.neighbours))
    if blocks:
        src = np.concatenate([b[0] for b in blocks])
        dst = np.concatenate([b[1] for b in blocks])
        val = np.concatenate([b[2] for b in blocks])
    else:
        src, dst, val = (np.zeros(0, dtype=np.int64),) * 2 + (np.zeros(0),)
    # column j kept its most similar sources; similarity is symmetric, so store it as
    # "source i → target j" rows: the top neighbours of j are the sources that recommend it
    neighbours = sparse.csr_matrix(
        (val, (dst, src)), shape=(interactions.n_products, interactions.n_products)
    )
    return ItemModel(
        neighbours=neighbours,
        popularity=_popularity(interactions, params),
        catalogue=catalogue,
        params=params,
    )


def _align(sim: sparse.csc_matrix, co: sparse.csc_matrix) -> sparse.csc_matrix:
    """``sim`` with exactly ``co``'s sparsity pattern (both computed from one set of
    customers, so the patterns agree except for explicit zeros)."""
    sim.sort_indices()
    co.sort_indices()
    if sim.nnz == co.nnz and np.array_equal(sim.indices, co.indices):
        return sim
    patterned = co.copy()
    patterned.data = np.asarray(sim[co.nonzero()]).ravel()
    return patterned


def _top_per_column(
    rows: IntArray, cols: IntArray, vals: FloatArray, k: int
) -> tuple[IntArray, IntArray, FloatArray]:
    """The ``k`` largest values of each column (ties by row)."""
    if len(vals) == 0:
        return rows, cols, vals
    order = np.lexsort((rows, -vals, cols))
    rows, cols, vals = rows[order], cols[order], vals[order]
    rank = _rank_within(cols)
    keep = rank < k
    return rows[keep], cols[keep], vals[keep]


def _rank_within(groups: IntArray) -> IntArray:
    """0, 1, 2… within each run of equal values of a sorted array."""
    n = len(groups)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    lengths = np.diff(np.r_[starts, n])
    return np.arange(n) - np.repeat(starts, lengths)


def _popularity(interactions: Interactions, params: Params) -> FloatArray:
    weights = interactions.weights(params)
    bought = interactions.kind == PURCHASE
    purchases = np.bincount(
        interactions.product[bought], weights=weights[bought], minlength=interactions.n_products
    )
    views = np.bincount(
        interactions.product[~bought], weights=weights[~bought], minlength=interactions.n_products
    )
    # views break ties between products nobody bought yet, never outrank a purchase
    scale = 1e-3 * purchases[purchases > 0].min() / max(views.max(), 1e-12) if bought.any() else 1.0
    return purchases.astype(np.float64) + views * scale


@dataclass(frozen=True)
class Recommendations:
    """Top-N per customer, as flat arrays sorted by (customer, rank)."""

    customer: IntArray
    product: IntArray
    score: FloatArray
    source: npt.NDArray[np.int8]
    #: the products that contributed most to each recommendation (-1 padding)
    because: IntArray

    def for_customer(self, code: int) -> list[tuple[int, float, str, list[int]]]:
        lo, hi = np.searchsorted(self.customer, [code, code + 1])
        return [
            (
                int(self.product[i]),
                float(self.score[i]),
                SOURCE_NAMES[int(self.source[i])],
                [int(b) for b in self.because[i] if b >= 0],
            )
            for i in range(lo, hi)
        ]


def recommend(
    model: ItemModel,
    interactions: Interactions,
    *,
    customers: IntArray | None = None,
    n: int = 10,
    reasons: int = 3,
) -> Recommendations:
    """The top ``n`` products of each customer in ``customers`` (default: every code),
    from their interactions in ``interactions`` (which may hold only theirs)."""
    if customers is None:
        customers = np.arange(interactions.n_customers, dtype=np.int64)
    customers = np.unique(np.asarray(customers, dtype=np.int64))
    params = model.params
    mine = np.isin(interactions.customer, customers)
    cust = np.searchsorted(customers, interactions.customer[mine])  # local codes
    prod = interactions.product[mine]
    kind = interactions.kind[mine]
    weight = interactions.weights(params)[mine]
    n_local, n_products = len(customers), model.n_products

    # 1. scores: the customers' weights times the neighbour matrix (summed in C++)
    x = sparse.csr_matrix((weight, (cust, prod)), shape=(n_local, n_products))
    x.sum_duplicates()
    x.sort_indices()
    scores = (x @ model.neighbours).tocsr()

    # 2. drop what the customer bought (unless consumable): every score is > 0, so a
    # blocked entry becomes an explicit zero and is eliminated
    bought = kind == PURCHASE
    durable = bought.copy()
    durable[bought] = ~model.catalogue.consumable[prod[bought]]
    blocked = np.unique(_keys(cust[durable], prod[durable], n_products))
    if len(blocked):
        mask = sparse.csr_matrix(
            (np.ones(len(blocked)), (blocked // n_products, blocked % n_products)),
            shape=(n_local, n_products),
        )
        scores = (scores - scores.multiply(mask)).tocsr()
        scores.eliminate_zeros()
    scores.sort_indices()

    # 3. the top n of each row (ties: the smaller product code first)
    top_cust, top_prod, top_score = _top_per_row(scores, n)

    # 4. the reasons: each recommendation's largest contributions w(c, i) * sim(i, j)
    because = _reasons(model.neighbours, x, top_cust, top_prod, reasons)

    # 5. fill up from popularity for customers with fewer than n
    fill = _fill_popular(
        model,
        n=n,
        n_local=n_local,
        cust=cust,
        prod=prod,
        blocked=blocked,
        have_cust=top_cust,
        have_prod=top_prod,
    )
    all_cust = np.concatenate([top_cust, fill[0]])
    all_prod = np.concatenate([top_prod, fill[1]])
    all_score = np.concatenate([top_score, fill[2]])
    all_source = np.concatenate(
        [np.full(len(top_cust), SIMILAR, dtype=np.int8), np.full(len(fill[0]), POPULAR, np.int8)]
    )
    all_because = np.concatenate([because, np.full((len(fill[0]), reasons), -1, np.int64)])
    # similar before popular, then by score
    final = np.lexsort((all_prod, -all_score, all_source, all_cust))
    return Recommendations(
        customer=customers[all_cust[final]],
        product=all_prod[final],
        score=all_score[final],
        source=all_source[final],
        because=all_because[final],
    )


def _top_per_row(scores: sparse.csr_matrix, n: int) -> tuple[IntArray, IntArray, FloatArray]:
    indptr, indices, data = scores.indptr, scores.indices, scores.data
    counts = np.diff(indptr)
    # rows with at most n candidates keep them all: only the longer ones need a selection
    keep = np.ones(len(data), dtype=bool)
    for row in np.flatnonzero(counts > n).tolist():
        lo, hi = int(indptr[row]), int(indptr[row + 1])
        values = data[lo:hi]
        # the n-th largest value; ties at the threshold are cut by product code below
        threshold = np.partition(values, len(values) - n)[len(values) - n]
        above = values > threshold
        at = np.flatnonzero(values == threshold)[: n - int(above.sum())]
        chosen = above
        chosen[at] = True
        keep[lo:hi] = chosen
    rows = np.repeat(np.arange(len(counts), dtype=np.int64), counts)[keep]
    cols = indices[keep].astype(np.int64)
    vals = data[keep]
    order = np.lexsort((cols, -vals, rows))
    return rows[order], cols[order], vals[order]


def _reasons(
    neighbours: sparse.csr_matrix,
    x: sparse.csr_matrix,
    rec_cust: IntArray,
    rec_prod: IntArray,
    reasons: int,
) -> IntArray:
    """Per recommendation, up to ``reasons`` of the customer's products by contribution
    (ties: the smaller product code first), -1 padded."""
    out = np.full((len(rec_cust), reasons), -1, dtype=np.int64)
    if len(rec_cust) == 0 or reasons == 0:
        return out
    n_products = neighbours.shape[1]
    degree = np.diff(x.indptr)[rec_cust]
    pair_rec = np.repeat(np.arange(len(rec_cust)), degree)
    where = _ranges(x.indptr[rec_cust].astype(np.int64), degree.astype(np.int64))
    items = x.indices[where].astype(np.int64)
    weights = x.data[where]
    nb = neighbours.tocsr()
    nb.sort_indices()
    nb_keys = np.repeat(np.arange(nb.shape[0], dtype=np.int64), np.diff(nb.indptr)) * n_products
    nb_keys += nb.indices
    wanted = items * n_products + rec_prod[pair_rec]
    at = np.minimum(np.searchsorted(nb_keys, wanted), max(len(nb_keys) - 1, 0))
    found = nb_keys[at] == wanted if len(nb_keys) else np.zeros(len(wanted), dtype=bool)
    contrib = np.where(found, weights * (nb.data[at] if len(nb_keys) else 0.0), 0.0)
    starts = np.r_[0, np.cumsum(degree)[:-1]].astype(np.int64)
    has = degree > 0
    position = np.arange(len(contrib), dtype=np.int64)
    for k in range(reasons):
        if not has.any():
            break
        best = np.zeros(len(rec_cust))
        best[has] = np.maximum.reduceat(contrib, starts[has])
        is_best = (contrib == np.repeat(best, degree)) & (contrib > 0)
        first = np.full(len(rec_cust), len(contrib), dtype=np.int64)
        first[has] = np.minimum.reduceat(np.where(is_best, position, len(contrib)), starts[has])
        ok = first < len(contrib)
        out[ok, k] = items[first[ok]]
        contrib[first[ok]] = 0.0
    return out


def _fill_popular(
    model: ItemModel,
    *,
    n: int,
    n_local: int,
    cust: IntArray,
    prod: IntArray,
    blocked: IntArray,
    have_cust: IntArray,
    have_prod: IntArray,
) -> tuple[IntArray, IntArray, FloatArray]:
    """Popular products for customers short of ``n``: first the most popular of the
    category they touched most, then the most popular overall. Scores are popularity
    shares in (0, 1]. Vectorised: one candidate row per short customer."""
    n_products = model.n_products
    empty = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    need = n - np.bincount(have_cust, minlength=n_local)
    short = np.flatnonzero(need > 0)
    if len(short) == 0 or model.popularity.max(initial=0.0) <= 0:
        return empty
    ranked = np.argsort(-model.popularity, kind="stable")
    ranked = ranked[model.popularity[ranked] > 0]
    width = 2 * n  # room for what is blocked or already recommended
    global_top = np.full(width, -1, dtype=np.int64)
    global_top[: min(width, len(ranked))] = ranked[:width]

    # each short customer's most touched category (-1: none known)
    category = model.catalogue.category
    cat_of = category[prod]
    known = cat_of >= 0
    n_cats = int(category.max(initial=-1)) + 1
    favourite = np.full(n_local, -1, dtype=np.int64)
    if n_cats and known.any():
        pair, counts = np.unique(cust[known] * n_cats + cat_of[known], return_counts=True)
        p_cust, p_cat = pair // n_cats, pair % n_cats
        order = np.lexsort((p_cat, -counts, p_cust))
        first = order[_rank_within(p_cust[order]) == 0]
        favourite[p_cust[first]] = p_cat[first]
        # the top products of each category
        r_cat = category[ranked]
        in_cat = r_cat >= 0
        by_cat, items = r_cat[in_cat], ranked[in_cat]
        cat_order = np.argsort(by_cat, kind="stable")  # popularity order kept within
        by_cat, items = by_cat[cat_order], items[cat_order]
        rank = _rank_within(by_cat)
        cat_top = np.full((n_cats, width), -1, dtype=np.int64)
        keep = rank < width
        cat_top[by_cat[keep], rank[keep]] = items[keep]
    else:
        cat_top = np.full((1, width), -1, dtype=np.int64)
    fav = favourite[short]
    first_part = np.where(fav[:, None] >= 0, cat_top[np.maximum(fav, 0)], -1)
    cand = np.concatenate([first_part, np.broadcast_to(global_top, (len(short), width))], axis=1)
    rows = np.repeat(short, cand.shape[1])
    flat = cand.ravel()
    position = np.tile(np.arange(cand.shape[1]), len(short))
    valid = flat >= 0
    rows, flat, position = rows[valid], flat[valid], position[valid]
    keys = _keys(rows, flat, n_products)
    have_key = np.unique(_keys(have_cust, have_prod, n_products))
    ok = ~_member(keys, blocked) & ~_member(keys, have_key)
    rows, flat, position, keys = rows[ok], flat[ok], position[ok], keys[ok]
    if len(keys) == 0:
        return empty
    # first occurrence of each product per customer, in candidate order
    order = np.lexsort((position, keys))
    first_of_key = np.r_[True, keys[order][1:] != keys[order][:-1]]
    unique_at = order[first_of_key]
    rows, flat, position = rows[unique_at], flat[unique_at], position[unique_at]
    order = np.lexsort((position, rows))
    rows, flat = rows[order], flat[order]
    chosen = _rank_within(rows) < need[rows]
    fill_c, fill_p = rows[chosen], flat[chosen]
    return fill_c, fill_p, model.popularity[fill_p] / model.popularity.max()


def _keys(customer: IntArray, product: IntArray, n_products: int) -> IntArray:
    return customer.astype(np.int64) * n_products + product.astype(np.int64)


def _member(values: IntArray, sorted_unique: IntArray) -> BoolArray:
    if len(sorted_unique) == 0:
        return np.zeros(len(values), dtype=bool)
    at = np.searchsorted(sorted_unique, values)
    at = np.minimum(at, len(sorted_unique) - 1)
    return np.asarray(sorted_unique[at] == values)


def _ranges(starts: IntArray, lengths: IntArray) -> IntArray:
    """The concatenation of ``range(s, s + l)`` for each pair, vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets: IntArray = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    return np.arange(total, dtype=np.int64) + offsets
