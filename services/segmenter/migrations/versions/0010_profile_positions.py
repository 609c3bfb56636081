"""profile positions: the customer.events position folded into each profile

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 01:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "segmenter"


def upgrade() -> None:
    op.add_column("profiles", sa.Column("folded_partition", sa.Integer()), schema=S)
    op.add_column("profiles", sa.Column("folded_offset", sa.BigInteger()), schema=S)


def downgrade() -> None:
    op.drop_column("profiles", "folded_offset", schema=S)
    op.drop_column("profiles", "folded_partition", schema=S)
