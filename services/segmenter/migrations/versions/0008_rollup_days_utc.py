"""rollup days in UTC: move the rows a client's offset put on its local day

Until this revision the consumer filed an event under the calendar day of its
timestamp *as the client sent it* (``22:00-05:00`` on the 12th counted on the
12th, though it is the 13th in UTC). The raw events are not kept, so only what
the statistics prove can be moved exactly: when a customer's first and last
event of a name (``event_stats.first_at`` / ``last_at``, true instants) fall on
one UTC day, every event of that name was on that day, and all its rollup rows
(every dimension) belong there. Those are moved and merged; that covers, among
others, every one-time buyer. Rows of a customer-event spread over several UTC
days stay where they are: an event sent with a non-UTC offset within its
offset of midnight may still count one day off (docs/segments.md, "Windows").
The downgrade leaves the rows where they are (the local days are not known).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 17:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MOVE_TO_UTC_DAY = """
WITH one_day AS (
    SELECT customer_id, event_name, (first_at AT TIME ZONE 'UTC')::date AS utc_day
    FROM segmenter.event_stats
    WHERE (first_at AT TIME ZONE 'UTC')::date = (last_at AT TIME ZONE 'UTC')::date
), moved AS (
    DELETE FROM segmenter.event_rollups r USING one_day o
    WHERE r.customer_id = o.customer_id AND r.event_name = o.event_name
      AND r.day <> o.utc_day
    RETURNING r.customer_id, r.event_name, o.utc_day, r.dimension, r.count, r.value_sum
)
INSERT INTO segmenter.event_rollups AS r
    (customer_id, event_name, day, dimension, count, value_sum)
SELECT customer_id, event_name, utc_day, dimension, sum(count), sum(value_sum)
FROM moved GROUP BY customer_id, event_name, utc_day, dimension
ON CONFLICT (customer_id, event_name, day, dimension) DO UPDATE
SET count = r.count + excluded.count, value_sum = r.value_sum + excluded.value_sum
"""


def upgrade() -> None:
    op.execute(MOVE_TO_UTC_DAY)


def downgrade() -> None:
    pass  # the clients' local days are not known: the rows stay on their UTC days
