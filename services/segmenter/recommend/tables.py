"""The tables of recommendations and loyalty, in the segmenter's schema.

- ``products``: the catalogue as the events describe it (category, latest seen) and as
  the API sets it (``consumable``: may be recommended again after a purchase); a small
  integer ``product_key`` so interactions stay narrow and the job reads integers.
- ``interactions``: per customer, product and kind (0 purchase, 1 view) a count and the
  last time, folded per batch by the consumer (set-based upsert).
- ``recommendations``: each customer's top N as published on ``profiles``.
- ``loyalty_program``: the program document (one row); ``loyalty_ledger``: points earned
  (keyed by the message that earned them and the rule) and spent.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    SmallInteger,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

from services.segmenter.models import Base, Key

Timestamp = DateTime(timezone=True)
metadata = Base.metadata

products = Table(
    "products",
    metadata,
    Column("product_id", Key, primary_key=True),
    Column("product_key", Integer, Identity(), nullable=False, unique=True),
    Column("category", Text),
    Column("consumable", Boolean, nullable=False, server_default="false"),
    Column("name", Text),
)

interactions = Table(
    "interactions",
    metadata,
    Column("customer_id", Key, primary_key=True),
    Column("product_key", Integer, primary_key=True),
    Column("kind", SmallInteger, primary_key=True),
    Column("count", Integer, nullable=False),
    Column("last_at", Timestamp, nullable=False),
)

recommendations = Table(
    "recommendations",
    metadata,
    Column("customer_id", Key, primary_key=True),
    Column("items", JSONB, nullable=False),
    Column("computed_at", Timestamp, nullable=False),
)

loyalty_program = Table(
    "loyalty_program",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("document", JSONB, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

loyalty_ledger = Table(
    "loyalty_ledger",
    metadata,
    Column("entry_id", BigInteger, Identity(), nullable=False, unique=True),
    Column("customer_id", Key, primary_key=True),
    # the messageId that earned it ("once" for a one-off bonus, "redeem:<id>" for a spend)
    Column("source_id", Key, primary_key=True),
    Column("rule_id", Key, primary_key=True),
    Column("at", Timestamp, nullable=False),
    Column("points", Integer, nullable=False),
    Column("expires_at", Timestamp),
    Column("event", Text),
    Index("ix_loyalty_ledger_customer_at", "customer_id", "at"),
)
