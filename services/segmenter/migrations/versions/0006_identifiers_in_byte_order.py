"""identifiers compared byte by byte (``COLLATE "C"``)

Customer ids, event names, rollup dimensions and segment ids are opaque keys: no
one sorts them for a reader, and the event path compares them all the time (the
primary keys of every table it writes, its ``= ANY`` lookups, its lock order).
With the database's linguistic collation each comparison goes through
``strcoll``; in byte order it is a ``memcmp``, and a backfill's chunks of ids
follow the same order as Python's ``str`` comparison (code points).

The tables are not rewritten; their indexes on these columns are rebuilt.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 07:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, columns) whose text keys are compared byte by byte
COLUMNS: dict[str, tuple[str, ...]] = {
    "profiles": ("customer_id",),
    "event_stats": ("customer_id", "event_name"),
    "event_rollups": ("customer_id", "event_name", "dimension"),
    "aliases": ("previous_id", "customer_id"),
    "suppressions": ("customer_id",),
    "segments": ("id", "backfill_cursor"),
    "segment_versions": ("segment_id",),
    "memberships": ("segment_id", "customer_id"),
    "membership_timers": ("customer_id",),
}


def _collate(collation: str) -> None:
    for table, columns in COLUMNS.items():
        changes = ", ".join(
            f'ALTER COLUMN {column} TYPE text COLLATE "{collation}"' for column in columns
        )
        op.execute(f"ALTER TABLE segmenter.{table} {changes}")


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate("default")
