"""The item-to-item model: exclusions, reasons, fallback, agreement with a brute-force
computation, and hit rate on a simulated shop with known taste clusters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.segmenter.recommend.model import (
    PURCHASE,
    SIMILAR,
    VIEW,
    Catalogue,
    Interactions,
    Params,
    fit,
    recommend,
)
from tests.unit.segmenter.recommend_sim import simulate


def interactions(
    rows: list[tuple[int, int, int]], n_customers: int, n_products: int
) -> Interactions:
    """``(customer, product, kind)`` rows, each once, all of age 0."""
    return Interactions(
        customer=np.array([r[0] for r in rows], dtype=np.int64),
        product=np.array([r[1] for r in rows], dtype=np.int64),
        kind=np.array([r[2] for r in rows], dtype=np.int8),
        count=np.ones(len(rows), dtype=np.int64),
        age_days=np.zeros(len(rows)),
        n_customers=n_customers,
        n_products=n_products,
    )


# customers 0-3 bought 0 and 1 together, 4-6 bought 2 and 3; customer 7 bought only 0
BASKETS = [(c, p, PURCHASE) for c in range(4) for p in (0, 1)] + [
    (c, p, PURCHASE) for c in range(4, 7) for p in (2, 3)
]


def test_recommends_what_was_bought_together_with_the_reason() -> None:
    data = interactions([*BASKETS, (7, 0, PURCHASE)], 8, 5)
    model = fit(data, Catalogue.unknown(5))
    recs = recommend(model, data, customers=np.array([7]), n=3).for_customer(7)
    assert recs[0][0] == 1
    assert recs[0][2] == "similar"
    assert recs[0][3] == [0]
    assert all(p != 0 for p, *_ in recs), "bought, not consumable"


def test_consumables_may_come_back_and_durables_never() -> None:
    data = interactions([*BASKETS, (7, 0, PURCHASE), (7, 1, PURCHASE)], 8, 5)
    consumable = np.array([False, True, False, False, False])
    model = fit(data, Catalogue(category=np.full(5, -1, np.int64), consumable=consumable))
    products = [p for p, *_ in recommend(model, data, customers=np.array([7])).for_customer(7)]
    assert 1 in products, "bought, but consumable: may be bought again"
    assert 0 not in products, "bought and durable"


def test_a_new_customer_gets_the_popular_products_of_the_category_they_viewed() -> None:
    category = np.array([0, 0, 1, 1, 1], dtype=np.int64)
    data = interactions([*BASKETS, (7, 4, VIEW)], 8, 5)
    model = fit(data, Catalogue(category=category, consumable=np.zeros(5, bool)))
    recs = recommend(model, data, customers=np.array([7]), n=3).for_customer(7)
    assert [r[2] for r in recs] == ["popular"] * 3
    # 4 was only viewed (nobody bought it): the bought products of category 1 come first
    assert {recs[0][0], recs[1][0]} == {2, 3}
    assert all(r[3] == [] for r in recs)


def test_cosine_matches_a_brute_force_computation() -> None:
    rng = np.random.default_rng(3)
    dense = (rng.random((30, 8)) < 0.35).astype(np.float64)
    rows = [(c, p, PURCHASE) for c, p in zip(*np.nonzero(dense), strict=True)]
    data = interactions([(int(c), int(p), k) for c, p, k in rows], 30, 8)
    params = Params(min_support=1, shrink=0.0, neighbours=8)
    model = fit(data, Catalogue.unknown(8), params)
    norms = np.linalg.norm(dense, axis=0)
    expected = dense.T @ dense / np.maximum(np.outer(norms, norms), 1e-12)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.neighbours.toarray(), expected, atol=1e-9)


def test_blocks_do_not_change_the_model() -> None:
    shop = simulate(np.random.default_rng(5), customers=300, clusters=4, products_per_cluster=10)
    one = fit(shop.train, shop.catalogue, Params(block=10_000))
    many = fit(shop.train, shop.catalogue, Params(block=7))
    np.testing.assert_allclose(one.neighbours.toarray(), many.neighbours.toarray(), atol=1e-12)


@st.composite
def histories(draw: st.DrawFn) -> tuple[Interactions, Catalogue]:
    n_customers = draw(st.integers(1, 12))
    n_products = draw(st.integers(1, 10))
    cells = draw(
        st.sets(
            st.tuples(
                st.integers(0, n_customers - 1),
                st.integers(0, n_products - 1),
                st.sampled_from([PURCHASE, VIEW]),
            ),
            max_size=60,
        )
    )
    rows = sorted(cells)
    data = Interactions(
        customer=np.array([r[0] for r in rows], dtype=np.int64),
        product=np.array([r[1] for r in rows], dtype=np.int64),
        kind=np.array([r[2] for r in rows], dtype=np.int8),
        count=np.array(
            draw(st.lists(st.integers(1, 5), min_size=len(rows), max_size=len(rows))),
            dtype=np.int64,
        ),
        age_days=np.array(
            draw(st.lists(st.floats(0, 1000), min_size=len(rows), max_size=len(rows)))
        ),
        n_customers=n_customers,
        n_products=n_products,
    )
    category = np.array(
        draw(st.lists(st.integers(-1, 2), min_size=n_products, max_size=n_products)), dtype=np.int64
    )
    consumable = np.array(
        draw(st.lists(st.booleans(), min_size=n_products, max_size=n_products)), dtype=bool
    )
    return data, Catalogue(category=category, consumable=consumable)


@settings(max_examples=150, deadline=None)
@given(histories(), st.integers(1, 6), st.sampled_from(["cosine", "lift"]))
def test_recommendations_are_well_formed(
    history: tuple[Interactions, Catalogue], n: int, similarity: str
) -> None:
    data, catalogue = history
    model = fit(data, catalogue, Params(similarity=similarity, min_support=1))  # type: ignore[arg-type]
    recs = recommend(model, data, n=n)
    assert np.all(np.diff(recs.customer) >= 0)
    for c in range(data.n_customers):
        mine = data.customer == c
        bought = set(data.product[mine & (data.kind == PURCHASE)].tolist())
        touched = set(data.product[mine].tolist())
        got = recs.for_customer(c)
        products = [p for p, *_ in got]
        assert len(products) == len(set(products)) <= n
        for product, score, source, because in got:
            assert product not in bought or catalogue.consumable[product]
            assert score > 0
            assert set(because) <= touched
            assert (source == "similar") == bool(because)
        sources = [s for _, _, s, _ in got]
        assert sources == sorted(sources, key=("similar", "popular").index)
        similar_scores = [s for _, s, src, _ in got if src == "similar"]
        assert similar_scores == sorted(similar_scores, reverse=True)


@settings(max_examples=60, deadline=None)
@given(histories())
def test_one_customer_at_a_time_equals_all_at_once(history: tuple[Interactions, Catalogue]) -> None:
    data, catalogue = history
    model = fit(data, catalogue, Params(min_support=1))
    together = recommend(model, data)
    for c in range(data.n_customers):
        alone = recommend(model, data, customers=np.array([c]))
        assert alone.for_customer(c) == together.for_customer(c)


def hit_rate(top: dict[int, set[int]], held_out: np.ndarray) -> float:
    tested = np.flatnonzero(held_out >= 0)
    return sum(int(held_out[c]) in top.get(int(c), set()) for c in tested) / len(tested)


@pytest.mark.parametrize("similarity", ["cosine", "lift"])
def test_held_out_purchases_hit_the_top_10_twice_as_often_as_popularity(similarity: str) -> None:
    shop = simulate(np.random.default_rng(20260), customers=3_000)
    model = fit(shop.train, shop.catalogue, Params(similarity=similarity))  # type: ignore[arg-type]
    recs = recommend(model, shop.train, n=10)
    ours: dict[int, set[int]] = {}
    for c, p in zip(recs.customer.tolist(), recs.product.tolist(), strict=True):
        ours.setdefault(c, set()).add(p)
    # baseline: the 10 most popular products the customer has not bought
    ranked = np.argsort(-model.popularity, kind="stable")
    bought = shop.train.kind == PURCHASE
    owned: dict[int, set[int]] = {}
    for c, p in zip(
        shop.train.customer[bought].tolist(), shop.train.product[bought].tolist(), strict=True
    ):
        owned.setdefault(c, set()).add(p)
    baseline = {c: _first(ranked, owned.get(c, set()), 10) for c in range(shop.train.n_customers)}
    ours_rate, base_rate = hit_rate(ours, shop.held_out), hit_rate(baseline, shop.held_out)
    print(f"{similarity}: hit rate @10 {ours_rate:.3f}, popularity {base_rate:.3f}")
    assert ours_rate >= 2 * base_rate
    assert (recs.source == SIMILAR).mean() > 0.9


def _first(ranked: np.ndarray, owned: set[int], k: int) -> set[int]:
    out: list[int] = []
    for p in ranked.tolist():
        if p not in owned:
            out.append(p)
            if len(out) == k:
                break
    return set(out)
