"""outbox rows that hold a pack of messages

``enqueue`` now writes the consecutive messages of one topic as one row (up to
500; ``shared.db.outbox_pack``): ``packed`` says ``value`` holds a pack,
``messages`` how many messages a row holds. Rows written by SQL (a sweep's or a
backfill's changes) stay one message each. ``value`` is stored without
compression: a pack is written once and deleted within seconds, and compressing
150 kB of JSON costs more CPU than the space saves.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 07:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "outbox",
        sa.Column("packed", sa.Boolean(), server_default=sa.false(), nullable=False),
        schema="segmenter",
    )
    op.add_column(
        "outbox",
        sa.Column("messages", sa.Integer(), server_default="1", nullable=False),
        schema="segmenter",
    )
    op.execute("ALTER TABLE segmenter.outbox ALTER COLUMN value SET STORAGE EXTERNAL")


def downgrade() -> None:
    """Refused while packs wait in the outbox: the older relay would publish a pack's
    bytes as one message."""
    op.execute(
        """
        DO $$ BEGIN
            IF EXISTS (SELECT 1 FROM segmenter.outbox WHERE packed) THEN
                RAISE EXCEPTION 'the outbox holds packs of messages: let the relay drain it first';
            END IF;
        END $$
        """
    )
    op.execute("ALTER TABLE segmenter.outbox ALTER COLUMN value SET STORAGE EXTENDED")
    op.drop_column("outbox", "messages", schema="segmenter")
    op.drop_column("outbox", "packed", schema="segmenter")
