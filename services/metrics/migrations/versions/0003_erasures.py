"""erasures: the erased customer ids (GDPR tombstones); funnel reasons cut to their
code (a provider's free text may quote the customer's address)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08 00:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: shared.events.dispatch_outcomes.Reason when this migration was written
REASONS = (
    "no_contact",
    "no_consent",
    "unsubscribed",
    "erased",
    "frequency_cap",
    "quiet_hours",
    "send_time",
    "expired",
    "template_error",
    "provider_error",
    "retries_exhausted",
    "hard_bounce",
    "soft_bounce",
    "complaint",
)


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("customer_id", sa.Text(collation="C"), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_erasures")),
        schema="metrics",
    )
    codes = ", ".join(f"'{r}'" for r in REASONS)
    code = (
        f"CASE WHEN btrim(split_part(reason, ':', 1)) IN ({codes}) "
        "THEN btrim(split_part(reason, ':', 1)) ELSE 'other' END"
    )
    op.execute(
        f"""
        WITH free AS (
            DELETE FROM metrics.funnel_daily
            WHERE reason <> '' AND reason NOT IN ({codes}, 'other')
            RETURNING day, journey_id, step_id, variant, channel, metric, {code} AS reason, count
        )
        INSERT INTO metrics.funnel_daily AS f
            (day, journey_id, step_id, variant, channel, metric, reason, count)
        SELECT day, journey_id, step_id, variant, channel, metric, reason, sum(count)
        FROM free GROUP BY day, journey_id, step_id, variant, channel, metric, reason
        ON CONFLICT (day, journey_id, step_id, variant, channel, metric, reason)
        DO UPDATE SET count = f.count + EXCLUDED.count
        """
    )


def downgrade() -> None:
    op.drop_table("erasures", schema="metrics")
