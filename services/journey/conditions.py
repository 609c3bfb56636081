"""What a journey step asks of the facts and the clock: whether a branch condition
holds for a customer, and the next instant a local wall-clock time comes round.

Pure functions of their arguments, used by :mod:`services.journey.machine`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from services.journey.definition import property_at
from shared.rules.json_values import COMPARE

if TYPE_CHECKING:
    from services.journey.definition import Condition
    from services.journey.machine import Facts


def condition_holds(condition: Condition, facts: Facts, trigger: Mapping[str, Any]) -> bool:
    from services.journey import definition as d

    match condition:
        case d.AllCondition():
            return all(condition_holds(c, facts, trigger) for c in condition.conditions)
        case d.AnyCondition():
            return any(condition_holds(c, facts, trigger) for c in condition.conditions)
        case d.NotCondition():
            return not condition_holds(condition.condition, facts, trigger)
        case d.SegmentCondition():
            return (condition.segment_id in facts.memberships) is condition.member
        case d.TraitCondition():
            return condition.test(property_at(facts.traits, condition.trait))
        case d.TriggerCondition():
            return condition.test(property_at(trigger, condition.property))
        case d.ScoreCondition():
            value = facts.churn_risk if condition.score == "churn_risk" else facts.predicted_ltv
            return value is not None and COMPARE[condition.op](value, condition.value)
        case d.RfmTierCondition():
            return facts.rfm_tier in condition.tiers
    return False  # pragma: no cover


def next_local_time(
    now: datetime, at: Any, weekdays: tuple[int, ...] | None, zone: ZoneInfo
) -> datetime:
    """The first instant after ``now`` whose wall clock in ``zone`` reads ``at``, on one
    of ``weekdays`` when given. A wall time skipped by a DST change resolves as
    ``zoneinfo`` does (fold 0)."""
    local = now.astimezone(zone)
    day = local.date()
    for _ in range(16):
        candidate = datetime.combine(day, at, tzinfo=zone)
        if candidate > local and (weekdays is None or candidate.isoweekday() in weekdays):
            return candidate.astimezone(now.tzinfo)
        day += timedelta(days=1)
    raise AssertionError("a weekday within 16 days always exists")  # pragma: no cover
