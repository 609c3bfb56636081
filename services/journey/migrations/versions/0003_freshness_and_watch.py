"""profile positions in the projection; the watch of dispatches without a final outcome

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08 00:25:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "journey"


def upgrade() -> None:
    op.add_column("profiles", sa.Column("folded_partition", sa.Integer()), schema=S)
    op.add_column("profiles", sa.Column("folded_offset", sa.BigInteger()), schema=S)
    op.create_table(
        "dispatch_watch",
        sa.Column("dispatch_id", sa.Text(collation="C"), nullable=False),
        sa.Column("customer_id", sa.Text(collation="C"), nullable=False),
        sa.Column("request", sa.LargeBinary(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dispatch_id", name=op.f("pk_dispatch_watch")),
        schema=S,
    )
    op.create_index(
        op.f("ix_dispatch_watch_due"), "dispatch_watch", ["due_at"], unique=False, schema=S
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_dispatch_watch_due"), table_name="dispatch_watch", schema=S)
    op.drop_table("dispatch_watch", schema=S)
    op.drop_column("profiles", "folded_offset", schema=S)
    op.drop_column("profiles", "folded_partition", schema=S)
