"""recommendations and loyalty: products, interactions, recommendations, loyalty program
and ledger; the loyalty tier and points on profiles

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 17:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "segmenter"


def key() -> sa.Text:
    return sa.Text(collation="C")


def ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("product_id", key(), nullable=False),
        sa.Column("product_key", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("category", sa.Text()),
        sa.Column("consumable", sa.Boolean(), nullable=False, server_default="false"),
        sa.Column("name", sa.Text()),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_products")),
        sa.UniqueConstraint("product_key", name=op.f("uq_products_product_key")),
        schema=S,
    )
    op.create_table(
        "interactions",
        sa.Column("customer_id", key(), nullable=False),
        sa.Column("product_key", sa.Integer(), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_at", ts(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "product_key", "kind", name=op.f("pk_interactions")),
        schema=S,
    )
    op.create_table(
        "recommendations",
        sa.Column("customer_id", key(), nullable=False),
        sa.Column("items", postgresql.JSONB(), nullable=False),
        sa.Column("computed_at", ts(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_recommendations")),
        schema=S,
    )
    op.create_table(
        "loyalty_program",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("document", postgresql.JSONB(), nullable=False),
        sa.Column("updated_at", ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loyalty_program")),
        schema=S,
    )
    op.create_table(
        "loyalty_ledger",
        sa.Column("entry_id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("customer_id", key(), nullable=False),
        sa.Column("source_id", key(), nullable=False),
        sa.Column("rule_id", key(), nullable=False),
        sa.Column("at", ts(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("expires_at", ts()),
        sa.Column("event", sa.Text()),
        sa.PrimaryKeyConstraint(
            "customer_id", "source_id", "rule_id", name=op.f("pk_loyalty_ledger")
        ),
        sa.UniqueConstraint("entry_id", name=op.f("uq_loyalty_ledger_entry_id")),
        schema=S,
    )
    op.create_index(
        "ix_loyalty_ledger_customer_at", "loyalty_ledger", ["customer_id", "at"], schema=S
    )
    op.add_column("profiles", sa.Column("loyalty_points", sa.Integer()), schema=S)
    op.add_column("profiles", sa.Column("loyalty_tier", sa.Text()), schema=S)


def downgrade() -> None:
    op.drop_column("profiles", "loyalty_tier", schema=S)
    op.drop_column("profiles", "loyalty_points", schema=S)
    op.drop_index("ix_loyalty_ledger_customer_at", table_name="loyalty_ledger", schema=S)
    for table in (
        "loyalty_ledger",
        "loyalty_program",
        "recommendations",
        "interactions",
        "products",
    ):
        op.drop_table(table, schema=S)
