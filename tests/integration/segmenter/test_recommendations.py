"""Recommendations through the service: purchases and views folded by the consumer,
the job's lists stored and published on ``profiles`` (and kept on later profile
messages), merged with an alias, removed by an erasure."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from aiokafka import ConsumerRecord
from sqlalchemy import text

from services.segmenter.recommend_job import RECOMMEND_LOCK, recompute_recommendations
from services.segmenter.repository.recommendations import customer_interactions
from shared.db.locks import release_session_lock, take_session_lock
from shared.events.profiles import ProfileUpdate
from tests.integration.segmenter.conftest import ADMIN, Stack
from tests.integration.segmenter.events import event, run_id


def order(customer: str, at: Any, *products: str, quantity: int = 1) -> Any:
    return event(
        "track",
        customer,
        at,
        event="Order Completed",
        properties={
            "revenue": 10 * len(products),
            "products": [
                {"product_id": p, "category": p.split("-")[0], "price": 10, "quantity": quantity}
                for p in products
            ],
        },
    )


async def latest_profile(
    stack: Stack, customer: str, until: Callable[[ProfileUpdate], object]
) -> ProfileUpdate:
    def matches(record: ConsumerRecord[bytes, bytes]) -> bool:
        return record.key == customer.encode() and bool(
            until(ProfileUpdate.from_bytes(record.value))
        )

    record = await stack.profiles.wait_for(matches, within_s=20)
    return ProfileUpdate.from_bytes(record.value)


async def test_purchases_become_recommendations_on_profiles(stack: Stack) -> None:
    run = run_id()
    now = stack.clock.now
    tent, stove, lamp = f"camp-tent{run}", f"camp-stove{run}", f"camp-lamp{run}"
    novel, poems = f"books-novel{run}", f"books-poems{run}"
    campers = [f"camper{i}-{run}" for i in range(4)]
    readers = [f"reader{i}-{run}" for i in range(3)]
    newcomer, fresh = f"newcomer-{run}", f"fresh-{run}"
    events = [
        event("identify", c, now - timedelta(days=30), traits={"run": run})
        for c in [*campers, *readers, newcomer, fresh]
    ]
    events += [order(c, now - timedelta(days=5), tent, stove, lamp) for c in campers]
    events += [order(c, now - timedelta(days=4), novel, poems) for c in readers]
    events += [order(newcomer, now - timedelta(days=1), tent)]
    events += [
        event(
            "track",
            fresh,
            now - timedelta(hours=2),
            event="Product Viewed",
            properties={"product_id": novel, "category": "books"},
        )
    ]
    await stack.send(*events)
    await stack.profile(fresh, until=lambda p: len(p["events"]) >= 1)
    await stack.profile(newcomer, until=lambda p: len(p["events"]) >= 1)
    async with stack.runtime.engine.connect() as conn:
        mine = await customer_interactions(conn, customer_id=newcomer)
    assert [(r[0], r[1], r[2], r[3]) for r in mine] == [(tent, "camp", 0, 1)]

    report = await recompute_recommendations(stack.runtime.engine, now=now)
    assert report is not None and report.changed >= 9
    update = await latest_profile(stack, newcomer, lambda p: p.recommendations)
    assert update.recommendations is not None
    got = [(r.product_id, r.source, r.because) for r in update.recommendations]
    # bought with the tent by every camper, explained by the tent; never the tent itself
    assert {got[0][0], got[1][0]} == {stove, lamp}
    assert got[0][1] == "similar" and got[0][2] == [tent]
    assert tent not in [g[0] for g in got]
    # a customer who only viewed a book: the other book first, then popular fill-up
    viewed = await latest_profile(stack, fresh, lambda p: p.recommendations)
    assert viewed.recommendations is not None
    assert viewed.recommendations[0].product_id == poems
    assert viewed.recommendations[0].because == [novel]

    # the admin API explains a customer's list
    answer = await stack.client.get(f"/v1/recommendations/{newcomer}", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["items"][0]["because"] == [
        {
            "product_id": tent,
            "kind": "purchase",
            "count": 1,
            "last_at": body["items"][0]["because"][0]["last_at"],
        }
    ]
    assert [h["product_id"] for h in body["history"]] == [tent]

    # a trait change later republishes the profile with the same recommendations
    await stack.send(event("identify", newcomer, now, traits={"plan": "pro"}))
    again = await latest_profile(stack, newcomer, lambda p: p.traits.get("plan") == "pro")
    assert again.recommendations == update.recommendations

    # nothing changed: a second run publishes nothing new
    second = await recompute_recommendations(stack.runtime.engine, now=now)
    assert second is not None and second.changed == 0


async def test_one_recompute_at_a_time_and_erasure_removes_the_history(stack: Stack) -> None:
    run = run_id()
    now = stack.clock.now
    buyer = f"erased-{run}"
    await stack.send(order(buyer, now - timedelta(days=1), f"x-a{run}", f"x-b{run}"))
    await stack.profile(buyer, until=lambda p: len(p["events"]) >= 1)
    async with stack.runtime.engine.connect() as holder:
        assert await take_session_lock(holder, RECOMMEND_LOCK)
        assert await recompute_recommendations(stack.runtime.engine, now=now) is None
        await release_session_lock(holder, RECOMMEND_LOCK)
        await holder.commit()
    assert await recompute_recommendations(stack.runtime.engine, now=now) is not None
    answer = await stack.client.delete(f"/v1/profiles/{buyer}", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    async with stack.runtime.engine.connect() as conn:
        for table in ("interactions", "recommendations", "loyalty_ledger"):
            left = await conn.scalar(
                text(f"SELECT count(*) FROM segmenter.{table} WHERE customer_id = :c"),
                {"c": buyer},
            )
            assert left == 0, table


async def test_an_alias_brings_the_anonymous_history(stack: Stack) -> None:
    run = run_id()
    now = stack.clock.now
    anonymous, known = f"anon-{run}", f"known-{run}"
    viewed = event(
        "track",
        None,
        now - timedelta(hours=3),
        anonymousId=anonymous,
        event="Product Viewed",
        properties={"product_id": f"y-a{run}", "category": "y"},
    )
    await stack.send(viewed, order(known, now - timedelta(hours=2), f"y-b{run}"))
    await stack.profile(known, until=lambda p: len(p["events"]) >= 1)
    await stack.send(event("alias", known, now - timedelta(hours=1), previousId=anonymous))
    for _ in range(100):
        async with stack.runtime.engine.connect() as conn:
            rows = await customer_interactions(conn, customer_id=known)
        if len(rows) == 2:
            break
        await asyncio.sleep(0.1)
    assert sorted((r[0], r[2]) for r in rows) == [(f"y-a{run}", 1), (f"y-b{run}", 0)]
