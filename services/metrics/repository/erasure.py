"""Erasure (GDPR) in the metrics tables: the erasure log, and the erased customers'
rows moved to a pseudonym (:mod:`shared.erasure`).

Every count the KPIs read is an aggregate that holds no customer; the rows keyed by
customer (``customers``, ``active_periods``, ``touches``, ``runs``) are what keep
those aggregates exact as late events come in, so they stay, under one random
pseudonym per erased customer: cohorts, retention and attribution still join them,
and nothing leads back to the customer. Set-based, inside the batch's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from shared.erasure import pseudonym, pseudonymise_sql

Driver = Any  # asyncpg.Connection

#: the tables whose rows are keyed by, or carry, a customer id
CUSTOMER_TABLES = ("customers", "active_periods", "touches", "runs")


async def erase_customers(
    driver: Driver, *, customer_ids: Iterable[str], at: datetime
) -> dict[str, str]:
    """Log the erasures and move the customers' rows to pseudonyms; returns each newly
    erased id's pseudonym (an id erased before is skipped: its rows moved then)."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    rows = await driver.fetch(
        "INSERT INTO metrics.erasures (customer_id, erased_at) "
        "SELECT unnest($1::text[]), $2 ON CONFLICT DO NOTHING RETURNING customer_id",
        ids,
        at,
    )
    names = {row["customer_id"]: pseudonym() for row in rows}
    if not names:
        return {}
    for table in CUSTOMER_TABLES:
        await driver.execute(
            pseudonymise_sql(f"metrics.{table}"), list(names), list(names.values())
        )
    return names


async def erased_among(driver: Driver, *, customer_ids: Iterable[str]) -> frozenset[str]:
    """The ids among these that were erased."""
    ids = sorted(set(customer_ids))
    if not ids:
        return frozenset()
    rows = await driver.fetch(
        "SELECT customer_id FROM metrics.erasures WHERE customer_id = ANY($1::text[])", ids
    )
    return frozenset(row["customer_id"] for row in rows)
