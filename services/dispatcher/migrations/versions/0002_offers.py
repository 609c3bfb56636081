"""offers: coupon pools and their codes

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 18:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "dispatcher"


def upgrade() -> None:
    op.create_table(
        "coupon_pools",
        sa.Column("pool_id", sa.Text(collation="C"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("low_water", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pool_id", name=op.f("pk_coupon_pools")),
        schema=S,
    )
    op.create_table(
        "coupons",
        sa.Column("pool_id", sa.Text(collation="C"), nullable=False),
        sa.Column("code", sa.Text(collation="C"), nullable=False),
        sa.Column("dispatch_id", sa.Text(collation="C")),
        sa.Column("customer_id", sa.Text(collation="C")),
        sa.Column("issued_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("pool_id", "code", name=op.f("pk_coupons")),
        sa.UniqueConstraint("pool_id", "dispatch_id", name=op.f("uq_coupons_pool_id_dispatch_id")),
        schema=S,
    )
    op.create_index(
        "ix_coupons_free",
        "coupons",
        ["pool_id", "code"],
        schema=S,
        postgresql_where=sa.text("dispatch_id IS NULL"),
    )
    op.create_index("ix_coupons_code", "coupons", ["code"], schema=S)


def downgrade() -> None:
    op.drop_table("coupons", schema=S)
    op.drop_table("coupon_pools", schema=S)
