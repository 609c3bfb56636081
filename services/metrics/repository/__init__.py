"""Set-based statements of the metrics service, by concern: the consumer's writes
(:mod:`.activity`, :mod:`.messaging`, :mod:`.runs`, inside the batch's transaction) and
the admin API's experiments and objectives. The KPI reads are in
:mod:`services.metrics.queries`.
"""

from services.metrics.repository.activity import apply_activity
from services.metrics.repository.erasure import erase_customers, erased_among
from services.metrics.repository.merges import apply_merges, redirect_runs, redirect_touches
from services.metrics.repository.messaging import (
    attribute_goals,
    attribute_redemptions,
    first_engagements,
    insert_touches,
    record_coupon_issues,
    upsert_funnel,
    upsert_segments,
    upsert_surveys,
)
from services.metrics.repository.runs import apply_runs

__all__ = [
    "apply_activity",
    "apply_merges",
    "apply_runs",
    "attribute_goals",
    "attribute_redemptions",
    "erase_customers",
    "erased_among",
    "first_engagements",
    "insert_touches",
    "record_coupon_issues",
    "redirect_runs",
    "redirect_touches",
    "upsert_funnel",
    "upsert_segments",
    "upsert_surveys",
]
