"""memberships by customer: a covering index

The sweep reads each swept customer's memberships (``was``), and the event path
each batch's; with ``segment_id`` in the index both are index-only scans, with no
heap fetch per membership.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 14:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_memberships_customer", table_name="memberships", schema="segmenter")
    op.create_index(
        "ix_memberships_customer",
        "memberships",
        ["customer_id", "segment_id"],
        unique=False,
        schema="segmenter",
    )


def downgrade() -> None:
    op.drop_index("ix_memberships_customer", table_name="memberships", schema="segmenter")
    op.create_index(
        "ix_memberships_customer", "memberships", ["customer_id"], unique=False, schema="segmenter"
    )
