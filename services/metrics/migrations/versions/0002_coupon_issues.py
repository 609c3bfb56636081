"""coupon_issues: which dispatch each offer code was issued for (``Coupon Issued``),
so a redemption converts that message

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 18:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "coupon_issues",
        sa.Column("code", sa.Text(collation="C"), nullable=False),
        sa.Column("dispatch_id", sa.Text(collation="C"), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_coupon_issues")),
        schema="metrics",
    )


def downgrade() -> None:
    op.drop_table("coupon_issues", schema="metrics")
