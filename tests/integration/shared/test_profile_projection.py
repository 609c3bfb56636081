"""The profile projection on real PostgreSQL: newest version wins, erasure sticks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import create_engine, service_metadata
from shared.db.profile_projection import (
    ProjectedProfile,
    ProjectionChanges,
    apply_profile_updates,
    load_profiles,
    profile_projection_table,
)
from shared.events.profiles import ComputedFields, ProfileUpdate
from shared.settings import DatabaseSettings
from tests.conftest import NewDatabase

AT = datetime(2026, 11, 20, 10, tzinfo=UTC)


@dataclass
class Projection:
    engine: AsyncEngine
    table: Table

    async def apply(self, *updates: ProfileUpdate) -> ProjectionChanges:
        async with self.engine.begin() as conn:
            return await apply_profile_updates(conn, table=self.table, updates=updates)

    async def load(self, *ids: str) -> dict[str, ProjectedProfile]:
        async with self.engine.begin() as conn:
            return await load_profiles(conn, table=self.table, ids=ids)


@pytest.fixture
async def projection(new_database: NewDatabase) -> AsyncIterator[Projection]:
    engine = create_engine(DatabaseSettings(url=await new_database()))
    try:
        metadata = service_metadata("t_projection")
        table = profile_projection_table(metadata)
        async with engine.begin() as conn:
            await conn.execute(text("CREATE SCHEMA t_projection"))
            await conn.run_sync(metadata.create_all)
        yield Projection(engine, table)
    finally:
        await engine.dispose()


def update(customer: str, version: int, **fields: object) -> ProfileUpdate:
    return ProfileUpdate.model_validate(
        {"customer_id": customer, "version": version, "updated_at": AT} | fields
    )


async def test_newest_version_wins_in_any_order(projection: Projection) -> None:
    v2 = update("ada", 2, email="new@example.com", traits={"plan": "pro"})
    v1 = update("ada", 1, email="old@example.com")
    changes = await projection.apply(v2)
    assert changes.updated == {"ada"}
    assert (await projection.apply(v1)).updated == set()  # a redelivered older one
    ada = (await projection.load("ada"))["ada"]
    assert ada.email == "new@example.com"
    assert ada.traits == {"plan": "pro"}


async def test_a_batch_keeps_the_highest_version_of_each_customer(projection: Projection) -> None:
    computed = ComputedFields(churn_risk=0.42, rfm_tier="champions")
    await projection.apply(
        update("ada", 3, timezone="Europe/Paris", computed=computed),
        update("ada", 2, timezone="America/New_York"),
        update("bob", 1, locale="fr-FR"),
    )
    loaded = await projection.load("ada", "bob", "nobody")
    assert set(loaded) == {"ada", "bob"}
    ada = loaded["ada"]
    assert ada.timezone == "Europe/Paris"
    assert ada.computed == {"churn_risk": 0.42, "rfm_tier": "champions"}


async def test_erasure_drops_the_data_and_a_stale_update_cannot_bring_it_back(
    projection: Projection,
) -> None:
    await projection.apply(update("ada", 1, email="ada@example.com", traits={"name": "Ada"}))
    changes = await projection.apply(update("ada", 2, deleted=True))
    assert changes.erased == {"ada"} and changes.updated == set()
    assert await projection.load("ada") == {}
    await projection.apply(update("ada", 1, email="ada@example.com"))
    assert await projection.load("ada") == {}
    async with projection.engine.connect() as conn:
        row = (await conn.execute(select(projection.table))).one()
    assert row.deleted and row.email is None and row.traits == {}


async def test_traits_keep_integers_beyond_64_bits(projection: Projection) -> None:
    """The segmenter publishes such a trait as it came (``json.dumps`` writes it)."""
    await projection.apply(update("ada", 1, traits={"id": 2**70, "ok": True}))
    assert (await projection.load("ada"))["ada"].traits == {"id": 2**70, "ok": True}


async def test_recommendations_and_loyalty_are_kept_beside_the_scores(
    projection: Projection,
) -> None:
    recs = [
        {"productId": "sku-2", "score": 0.5, "because": ["sku-1"], "source": "similar"},
        {"productId": "sku-9", "score": 0.1, "source": "popular"},
    ]
    await projection.apply(
        update(
            "c-recs",
            1,
            computed={"churn_risk": 0.7, "loyalty_tier": "Gold", "loyalty_points": 2400},
            recommendations=recs,
        )
    )
    loaded = (await projection.load("c-recs"))["c-recs"]
    assert loaded.computed == {
        "churn_risk": 0.7,
        "loyalty_tier": "Gold",
        "loyalty_points": 2400,
        "recommendations": [
            {"product_id": "sku-2", "score": 0.5, "because": ["sku-1"], "source": "similar"},
            {"product_id": "sku-9", "score": 0.1, "because": [], "source": "popular"},
        ],
    }
    # a later profile without recommendations (none computed any more) drops them
    await projection.apply(update("c-recs", 2, computed={"churn_risk": 0.2}))
    assert (await projection.load("c-recs"))["c-recs"].computed == {"churn_risk": 0.2}
