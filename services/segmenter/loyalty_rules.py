"""A loyalty program as a document: earning rules, tiers, expiry; and the pure arithmetic
of a customer's ledger (what an event earns, the balance after expiry, the tier).

Earning (each rule has an ``id``; a ledger entry is keyed by the event's messageId and
the rule id, so a redelivered event earns nothing twice):

- ``per_revenue``: ``points_per_unit`` × the event's revenue (``revenue``, else ``total``,
  else ``value``), rounded down, times the tier's multiplier;
- ``per_event``: fixed points for an event, optionally only when properties equal given
  values (``{"where": {"type": "review"}}``), times the tier's multiplier;
- ``first_event``: a one-off bonus the first time a customer sends the event (keyed by the
  rule alone, so it is earned once whatever the message).

Points expire ``expire_after_days`` after they were earned; redemptions spend the oldest
points first (FIFO lots), so what expires is what was left of a lot on its day. A tier is
chosen by the points **earned** (not spent) in the last ``qualifying_days`` (or ever).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.validation import SafeModel

RuleId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
Scalar = str | int | float | bool


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: RuleId
    event: str = Field(min_length=1, max_length=200)


class PerRevenue(_Rule):
    kind: Literal["per_revenue"] = "per_revenue"
    points_per_unit: float = Field(gt=0, le=10_000)


class PerEvent(_Rule):
    kind: Literal["per_event"] = "per_event"
    points: int = Field(ge=1, le=1_000_000)
    where: dict[str, Scalar] = Field(default_factory=dict, max_length=10)


class FirstEvent(_Rule):
    kind: Literal["first_event"] = "first_event"
    points: int = Field(ge=1, le=1_000_000)


Rule = Annotated[PerRevenue | PerEvent | FirstEvent, Field(discriminator="kind")]


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9 _-]+$")
    min_points: int = Field(ge=0)
    multiplier: float = Field(default=1.0, ge=0, le=100)


class Program(SafeModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rules: list[Rule] = Field(default_factory=list, max_length=100)
    tiers: list[Tier] = Field(
        default_factory=lambda: [Tier(name="Member", min_points=0)], min_length=1, max_length=20
    )
    expire_after_days: int | None = Field(default=365, ge=1, le=36_500)
    qualifying_days: int | None = Field(default=365, ge=1, le=36_500)

    @model_validator(mode="after")
    def _check(self) -> Program:
        ids = [rule.id for rule in self.rules]
        if len(ids) != len(set(ids)):
            raise ValueError("rule ids must be unique")
        thresholds = [tier.min_points for tier in self.tiers]
        if thresholds[0] != 0 or thresholds != sorted(set(thresholds)):
            raise ValueError("tiers start at 0 points and rise strictly")
        if len({tier.name for tier in self.tiers}) != len(self.tiers):
            raise ValueError("tier names must be unique")
        return self

    def events(self) -> frozenset[str]:
        return frozenset(rule.event for rule in self.rules)

    def tier_for(self, qualifying_points: int) -> Tier:
        chosen = self.tiers[0]
        for tier in self.tiers:
            if qualifying_points >= tier.min_points:
                chosen = tier
        return chosen

    def next_tier(self, qualifying_points: int) -> Tier | None:
        return next((t for t in self.tiers if t.min_points > qualifying_points), None)

    def rank(self, tier_name: str) -> int:
        """The position of a tier (0 the lowest), -1 when the program has no such tier."""
        return next((i for i, t in enumerate(self.tiers) if t.name == tier_name), -1)


@dataclass(frozen=True)
class Earned:
    rule_id: str
    points: int
    #: keyed by the rule alone (``first_event``), not by the message
    once: bool = False


def revenue_of(properties: Mapping[str, Any]) -> float | None:
    for name in ("revenue", "total", "value"):
        value = properties.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def earn(
    program: Program, *, event: str, properties: Mapping[str, Any], tier: Tier | None = None
) -> list[Earned]:
    """What one event earns under ``program`` for a customer in ``tier`` (the multiplier)."""
    multiplier = tier.multiplier if tier is not None else program.tiers[0].multiplier
    out: list[Earned] = []
    for rule in program.rules:
        if rule.event != event:
            continue
        if isinstance(rule, PerRevenue):
            revenue = revenue_of(properties)
            if revenue is None or revenue <= 0:
                continue
            points = math.floor(revenue * rule.points_per_unit * multiplier + 1e-9)
            if points > 0:
                out.append(Earned(rule.id, min(points, 1_000_000_000)))
        elif isinstance(rule, PerEvent):
            if all(properties.get(k) == v for k, v in rule.where.items()):
                out.append(Earned(rule.id, math.floor(rule.points * multiplier + 1e-9)))
        else:
            out.append(Earned(rule.id, rule.points, once=True))
    return [e for e in out if e.points > 0]


@dataclass(frozen=True)
class Entry:
    """A ledger entry: positive points earned (with their expiry), negative spent."""

    at: datetime
    points: int
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Standing:
    balance: int
    expired: int
    earned_qualifying: int
    tier: Tier
    next_tier: Tier | None
    #: points that expire within the next 30 days
    expiring_soon: int
    #: (when, points) of each expiry so far, for the history
    expiries: tuple[tuple[datetime, int], ...]


def expiry_of(program: Program, earned_at: datetime) -> datetime | None:
    if program.expire_after_days is None:
        return None
    return earned_at + timedelta(days=program.expire_after_days)


def standing(program: Program, entries: Iterable[Entry], *, now: datetime) -> Standing:
    """Balance after FIFO expiry and redemptions as of ``now``, and the tier.

    Entries after ``now`` are ignored. A redemption larger than the balance spends what
    there is (the API refuses one beforehand; this keeps the arithmetic total).
    """
    ordered = sorted((e for e in entries if e.at <= now), key=lambda e: (e.at, -e.points))
    lots: deque[list[Any]] = deque()  # [expires_at, remaining]
    expiries: list[tuple[datetime, int]] = []
    earned_window = 0
    window_start = (
        now - timedelta(days=program.qualifying_days) if program.qualifying_days else None
    )

    def expire_until(moment: datetime) -> None:
        # lots expire in earning order only if every lot lives equally long; sort to be safe
        for lot in sorted(lots, key=lambda x: (x[0] is None, x[0] or moment)):
            if lot[0] is not None and lot[0] <= moment and lot[1] > 0:
                expiries.append((lot[0], lot[1]))
                lot[1] = 0
        while lots and lots[0][1] == 0:
            lots.popleft()

    for entry in ordered:
        expire_until(entry.at)
        if entry.points > 0:
            lots.append([entry.expires_at, entry.points])
            if window_start is None or entry.at > window_start:
                earned_window += entry.points
        else:
            spend = -entry.points
            for lot in lots:
                if spend == 0:
                    break
                taken = min(lot[1], spend)
                lot[1] -= taken
                spend -= taken
            while lots and lots[0][1] == 0:
                lots.popleft()
    expire_until(now)
    balance = sum(lot[1] for lot in lots)
    soon = now + timedelta(days=30)
    expiring = sum(lot[1] for lot in lots if lot[0] is not None and lot[0] <= soon)
    return Standing(
        balance=balance,
        expired=sum(points for _, points in expiries),
        earned_qualifying=earned_window,
        tier=program.tier_for(earned_window),
        next_tier=program.next_tier(earned_window),
        expiring_soon=expiring,
        expiries=tuple(sorted(expiries)),
    )
