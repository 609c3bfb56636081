"""segments.backfill_cursor: how far the backfill of the current version got

A backfill runs in chunks of customer ids, one transaction each; the cursor is the
last customer id (in key order) of the last committed chunk, so a backfill cut
short resumes after it instead of from the first customer.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 07:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("segments", sa.Column("backfill_cursor", sa.Text()), schema="segmenter")


def downgrade() -> None:
    op.drop_column("segments", "backfill_cursor", schema="segmenter")
