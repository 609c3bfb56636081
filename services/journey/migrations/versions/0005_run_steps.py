"""run_steps: each run's history (one row per journey.runs event)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 03:35:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "journey"


def upgrade() -> None:
    op.create_table(
        "run_steps",
        sa.Column("run_id", sa.Text(collation="C"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("step_id", sa.Text(), nullable=True),
        sa.Column("step_type", sa.Text(), nullable=True),
        sa.Column("waiting_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("waiting_for", sa.Text(), nullable=True),
        sa.Column("exit_reason", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_run_steps")),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("run_steps", schema=S)
