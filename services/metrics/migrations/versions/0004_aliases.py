"""aliases: ids merged into another customer, their late rows re-keyed

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 01:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "aliases",
        sa.Column("previous_id", sa.Text(collation="C"), nullable=False),
        sa.Column("customer_id", sa.Text(collation="C"), nullable=False),
        sa.PrimaryKeyConstraint("previous_id", name=op.f("pk_aliases")),
        schema="metrics",
    )


def downgrade() -> None:
    op.drop_table("aliases", schema="metrics")
