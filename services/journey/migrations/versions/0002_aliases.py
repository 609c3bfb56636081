"""aliases: ids merged into another customer (their runs re-keyed, late inputs redirected)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-08 01:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "aliases",
        sa.Column("previous_id", sa.Text(collation="C"), nullable=False),
        sa.Column("customer_id", sa.Text(collation="C"), nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("previous_id", name=op.f("pk_aliases")),
        schema="journey",
    )


def downgrade() -> None:
    op.drop_table("aliases", schema="journey")
