"""The offers tables in the dispatcher's schema (migration 0002): ``coupon_pools`` and
their ``coupons``, each drawn at most once (``dispatch_id`` unique per pool)."""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, Table, Text, UniqueConstraint, text

from services.dispatcher.models import metadata
from shared.db.types import Key, Timestamp

coupon_pools = Table(
    "coupon_pools",
    metadata,
    Column("pool_id", Key, primary_key=True),
    Column("name", Text, nullable=False),
    Column("low_water", Integer, nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

coupons = Table(
    "coupons",
    metadata,
    Column("pool_id", Key, primary_key=True),
    Column("code", Key, primary_key=True),
    Column("dispatch_id", Key),
    Column("customer_id", Key),
    Column("issued_at", Timestamp),
    UniqueConstraint("pool_id", "dispatch_id", name="uq_coupons_pool_id_dispatch_id"),
    Index("ix_coupons_free", "pool_id", "code", postgresql_where=text("dispatch_id IS NULL")),
    Index("ix_coupons_code", "code"),
)
