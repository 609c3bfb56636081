"""processed_messages keyed by the UUID of each messageId's MD5

The b-tree of text ids (30-40 bytes, compared by the database's collation) was the
consumer's third most costly statement to maintain, and it grows with every event
for the retention period (7 days). Keys of 16 bytes compared as bytes make it
smaller and cheaper; an MD5 collision between two message ids is not a concern at
these volumes (one in 2^64 for billions of ids).

Downgrading cannot recover the ids from their hashes: it keeps the hashes as text,
so messages redelivered after a downgrade are not recognised as processed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 19:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "segmenter.processed_messages"


def upgrade() -> None:
    op.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT pk_processed_messages")
    op.execute(f"ALTER TABLE {TABLE} RENAME COLUMN message_id TO message_key")
    op.execute(
        f"ALTER TABLE {TABLE} ALTER COLUMN message_key TYPE uuid USING md5(message_key)::uuid"
    )
    op.execute(
        f"ALTER TABLE {TABLE} ADD CONSTRAINT pk_processed_messages PRIMARY KEY (message_key)"
    )


def downgrade() -> None:
    op.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT pk_processed_messages")
    op.execute(f"ALTER TABLE {TABLE} ALTER COLUMN message_key TYPE text")
    op.execute(f"ALTER TABLE {TABLE} RENAME COLUMN message_key TO message_id")
    op.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT pk_processed_messages PRIMARY KEY (message_id)")
