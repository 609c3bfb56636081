"""The checks before every send, as pure functions of (request, contact, preferences,
recent sends, policy, now) → decision.

In order:

1. the customer was erased → suppressed (``erased``); the request expired →
   suppressed (``expired``);
2. global unsubscribe, or unsubscribed from the request's topic → suppressed
   (``unsubscribed``);
3. the channel: the first of the request's fallback list for which the customer has
   an address, has not turned the channel off, and the template has a variant; none
   → suppressed (``no_contact`` when no channel had an address, else ``no_consent``),
   or failed (``template_error``) when the template has no variant for any;
4. unless the priority is ``critical``: **frequency caps** over every journey's sends
   (per channel and in total, in rolling windows) → deferred until the budget allows;
   **quiet hours** in the customer's timezone (:func:`customer_zone`) → deferred
   until they end;
5. the **send time** (now, a local time, the customer's best hour): not yet → deferred.

A deferral names the first reason that holds now and waits until every check can
pass (a cap that frees up inside quiet hours waits for the morning); a deferral
that would end at or after the request's ``expires_at`` is suppressed (``expired``)
at once. Deferred messages are checked again when their timer fires.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)

from services.dispatcher.contacts import TIMEZONE_TRAIT, Address, Contact
from shared.events.channels import Channel
from shared.events.dispatch_outcomes import Reason
from shared.events.dispatch_requests import (
    DispatchRequest,
    Priority,
    SendAtBestTime,
    SendAtLocalTime,
)


class Cap(BaseModel):
    """At most ``limit`` messages in any ``window_hours`` (on ``channel``; all: ``None``)."""

    model_config = ConfigDict(frozen=True)

    channel: Channel | None = None
    limit: int = Field(ge=0, le=10_000)
    window_hours: float = Field(gt=0, le=24 * 366)


def _local(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("a local time has no offset: the customer's timezone applies")
    return value


#: a wall-clock time; documented by its pattern, since OpenAPI's ``format: time`` is
#: RFC 3339's, which needs an offset ("21:00:00Z") that a local time has not
LocalTime = Annotated[
    time,
    AfterValidator(_local),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?$",
            "description": "a local time, HH:MM[:SS[.ffffff]]",
            "examples": ["21:00"],
        }
    ),
]


class QuietHours(BaseModel):
    """No message between ``start`` and ``end`` in the customer's timezone (the window
    wraps midnight when ``start`` > ``end``)."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = True
    start: LocalTime = time(21, 0)
    end: LocalTime = time(9, 0)


class SendPolicy(BaseModel):
    """The deployment's sending policy (editable through the admin API)."""

    model_config = ConfigDict(frozen=True)

    caps: list[Cap] = Field(
        default_factory=lambda: [
            Cap(channel=Channel.EMAIL, limit=1, window_hours=24),
            Cap(limit=2, window_hours=24),
            Cap(limit=5, window_hours=24 * 7),
        ],
        max_length=50,
    )
    quiet_hours: QuietHours = QuietHours()
    #: the timezone of customers whose profile has none
    default_timezone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"
    #: opens and clicks needed before a customer's own best hour replaces the default
    best_time_min_events: int = Field(default=3, ge=1, le=1_000)

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if _zone(value) is None:
            raise ValueError(f"unknown timezone {value!r}")
        return value

    @property
    def longest_window(self) -> timedelta:
        return timedelta(hours=max((c.window_hours for c in self.caps), default=0))


@dataclass(frozen=True, slots=True)
class Preferences:
    """A customer's choices (default: subscribed to everything, per topic defaults)."""

    unsubscribed: bool = False
    #: channel → allowed; a channel not named is allowed
    channels: Mapping[str, bool] = field(default_factory=dict)
    #: topic → subscribed; a topic not named follows its default
    topics: Mapping[str, bool] = field(default_factory=dict)

    def subscribed_to(self, topic: str | None, defaults: Mapping[str, bool]) -> bool:
        if topic is None:
            return True
        return self.topics.get(topic, defaults.get(topic, True))

    def allows(self, channel: Channel) -> bool:
        return self.channels.get(channel.value, True)


@dataclass(frozen=True, slots=True)
class Sent:
    """A message already sent (or being sent) to the customer, for the caps."""

    channel: Channel
    at: datetime


class Action(StrEnum):
    SEND = "send"
    DEFER = "defer"
    SUPPRESS = "suppress"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    channel: Channel | None = None
    address: Address | None = None
    reason: str | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Situation:
    """Everything a decision reads besides the request and the clock."""

    contact: Contact | None
    preferences: Preferences
    recent: Sequence[Sent]
    #: the channels the template has a variant for
    template_channels: frozenset[Channel]
    #: the topic the message belongs to (the request's, else the template's)
    topic: str | None
    topic_defaults: Mapping[str, bool] = field(default_factory=dict)
    #: when the send-time policy allows the send (computed once, on arrival)
    not_before: datetime | None = None
    webhook_default: str | None = None


def decide(
    request: DispatchRequest, situation: Situation, policy: SendPolicy, now: datetime
) -> Decision:
    """What to do with ``request`` now; see the module docstring for the order."""
    contact = situation.contact
    if contact is not None and contact.erased:
        return Decision(Action.SUPPRESS, reason=Reason.ERASED)
    if request.expires_at is not None and request.expires_at <= now:
        return Decision(Action.SUPPRESS, reason=Reason.EXPIRED)
    preferences = situation.preferences
    if preferences.unsubscribed or not preferences.subscribed_to(
        situation.topic, situation.topic_defaults
    ):
        return Decision(Action.SUPPRESS, reason=Reason.UNSUBSCRIBED)

    chosen = _choose_channel(request, situation)
    if isinstance(chosen, Decision):
        return chosen
    channel, address = chosen

    waits: list[tuple[str, datetime]] = []
    if request.priority is not Priority.CRITICAL:
        free_at = cap_free_at(policy.caps, situation.recent, channel, now)
        if free_at is not None:
            waits.append((Reason.FREQUENCY_CAP, free_at))
    not_before = situation.not_before
    zone = customer_zone(contact, policy)
    if request.priority is not Priority.CRITICAL:
        quiet_end = quiet_hours_end(policy.quiet_hours, zone, now)
        if quiet_end is not None:
            waits.append((Reason.QUIET_HOURS, quiet_end))
    if not_before is not None and not_before > now:
        waits.append((Reason.SEND_TIME, not_before))
    if not waits:
        return Decision(Action.SEND, channel=channel, address=address)

    until = max(at for _, at in waits)
    if request.priority is not Priority.CRITICAL:
        # the instant every other check allows may fall in quiet hours: wait for their end
        until = quiet_hours_end(policy.quiet_hours, zone, until) or until
    if request.expires_at is not None and until >= request.expires_at:
        return Decision(Action.SUPPRESS, channel=channel, reason=Reason.EXPIRED)
    return Decision(Action.DEFER, channel=channel, reason=waits[0][0], until=until)


def _choose_channel(
    request: DispatchRequest, situation: Situation
) -> tuple[Channel, Address] | Decision:
    contact = situation.contact
    had_address = had_variant = False
    for channel in request.channels:
        if channel not in situation.template_channels:
            continue
        had_variant = True
        address = (
            None
            if contact is None
            else contact.address(channel, webhook_default=situation.webhook_default)
        )
        if address is None:
            continue
        had_address = True
        if situation.preferences.allows(channel):
            return channel, address
    if not had_variant:
        return Decision(
            Action.FAIL,
            reason=f"{Reason.TEMPLATE_ERROR}: the template has no variant for "
            + ", ".join(c.value for c in request.channels),
        )
    return Decision(Action.SUPPRESS, reason=Reason.NO_CONSENT if had_address else Reason.NO_CONTACT)


def cap_free_at(
    caps: Iterable[Cap], recent: Sequence[Sent], channel: Channel, now: datetime
) -> datetime | None:
    """When one more message on ``channel`` fits every cap, or ``None`` when it fits now."""
    latest: datetime | None = None
    for cap in caps:
        if cap.channel is not None and cap.channel is not channel:
            continue
        window = timedelta(hours=cap.window_hours)
        inside = sorted(
            s.at
            for s in recent
            if s.at > now - window and (cap.channel is None or s.channel is cap.channel)
        )
        if len(inside) < cap.limit:
            continue
        if cap.limit == 0:
            return datetime.max.replace(tzinfo=UTC)
        # the send that must leave the window for one more to fit
        leaves = inside[len(inside) - cap.limit] + window
        latest = leaves if latest is None or leaves > latest else latest
    return latest


def customer_zone(contact: Contact | None, policy: SendPolicy) -> ZoneInfo:
    """The customer's timezone, the first valid of: the profile's ``timezone`` (the zone
    the customer's events last reported in ``context.timezone``), the ``timezone``
    trait (an identify call's), the policy's ``default_timezone``. A name that is not
    an IANA zone is skipped."""
    names = (contact.timezone, contact.traits.get(TIMEZONE_TRAIT)) if contact else ()
    for name in (*names, policy.default_timezone):
        zone = _zone(name) if isinstance(name, str) else None
        if zone is not None:
            return zone
    return ZoneInfo("UTC")


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def quiet_hours_end(quiet: QuietHours, zone: ZoneInfo, at: datetime) -> datetime | None:
    """The end of the quiet hours ``at`` falls in (UTC), or ``None`` outside them."""
    if not quiet.enabled or quiet.start == quiet.end:
        return None
    local = at.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    if quiet.start < quiet.end:
        inside = quiet.start <= clock < quiet.end
        end_day = local.date()
    else:  # wraps midnight: 21:00–09:00
        inside = clock >= quiet.start or clock < quiet.end
        end_day = local.date() + timedelta(days=1) if clock >= quiet.start else local.date()
    if not inside:
        return None
    return _local_instant(end_day, quiet.end, zone)


def _local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """``day`` at ``at`` in ``zone``, in UTC; a time skipped by a DST change moves on."""
    naive = datetime.combine(day, at)
    local = naive.replace(tzinfo=zone)
    # A nonexistent local time (spring forward) round-trips to another wall time.
    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        local = (naive + timedelta(hours=1)).replace(tzinfo=zone)
    return local.astimezone(UTC)


def not_before(
    request: DispatchRequest,
    contact: Contact | None,
    policy: SendPolicy,
    engagement_hours: Mapping[int, int],
) -> datetime:
    """When the request's send-time policy allows the send, from ``requested_at``.

    ``engagement_hours`` counts the customer's opens and clicks by UTC hour of day.
    """
    start = request.requested_at.astimezone(UTC)
    policy_ = request.send_time
    zone = customer_zone(contact, policy)
    if isinstance(policy_, SendAtLocalTime):
        local = start.astimezone(zone)
        wanted = policy_.at.replace(tzinfo=None)
        for days in range(0, 8):
            day = local.date() + timedelta(days=days)
            if policy_.weekdays is not None and day.isoweekday() not in policy_.weekdays:
                continue
            candidate = _local_instant(day, wanted, zone)
            if candidate >= start:
                return candidate
        return start  # unreachable: a week holds every weekday
    if isinstance(policy_, SendAtBestTime):
        latest = start + timedelta(hours=policy_.within_hours)
        hour = best_hour(engagement_hours, policy.best_time_min_events)
        if hour is not None:
            candidate = start.replace(hour=hour, minute=0, second=0, microsecond=0)
        else:
            local = start.astimezone(zone)
            candidate = _local_instant(local.date(), time(policy_.default_hour), zone)
        while candidate < start:
            candidate += timedelta(days=1)
        return min(candidate, latest)
    return start


def best_hour(engagement_hours: Mapping[int, int], min_events: int) -> int | None:
    """The UTC hour of day the customer opens and clicks most (the earliest of equals),
    or ``None`` with fewer than ``min_events``."""
    if sum(engagement_hours.values()) < min_events:
        return None
    return max(sorted(engagement_hours), key=lambda hour: engagement_hours[hour])
