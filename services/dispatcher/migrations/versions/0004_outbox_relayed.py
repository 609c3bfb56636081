"""outbox_relayed: what the outbox relay published, kept for a replay

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 02:45:00
"""

from collections.abc import Sequence

from alembic import op

from shared.db.migrations import create_declared_table
from shared.db.outbox import outbox_relayed_table

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "dispatcher"


def upgrade() -> None:
    create_declared_table(S, outbox_relayed_table)


def downgrade() -> None:
    op.drop_table("outbox_relayed", schema=S)
