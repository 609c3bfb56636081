"""profile positions: how far the profile copy has folded customer.events

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08 00:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "dispatcher"


def upgrade() -> None:
    op.add_column("profiles", sa.Column("folded_partition", sa.Integer()), schema=S)
    op.add_column("profiles", sa.Column("folded_offset", sa.BigInteger()), schema=S)


def downgrade() -> None:
    op.drop_column("profiles", "folded_offset", schema=S)
    op.drop_column("profiles", "folded_partition", schema=S)
