"""The dispatcher's decision, as a pure function: :func:`plan` takes a request, what
the database holds about it (:class:`Facts`), the sending policy and the clock's now,
and returns a :class:`Plan`: the delivery's update, its outcome, the deferral's timer,
the outbox messages and the message to hand to a provider. Exactly one of four
actions (:class:`~services.dispatcher.policy.Action`) holds:

==========  ==============  =========  ========  ====================================
action      delivery        outcome    timer     besides
==========  ==============  =========  ========  ====================================
send        ``sending``     (later)    —         the :class:`Claimed` message; the
                                                 coupon codes it issued announced
defer       ``deferred``    deferred   > now     —
suppress    ``suppressed``  suppressed —         —
fail        ``failed``      failed     —         a dead letter
==========  ==============  =========  ========  ====================================

Before any check, freshness (docs/architecture.md, "Freshness"): a request whose
``requires`` position its customer's profile copy has not reached (:func:`behind`) is
deferred without an outcome (``profile_behind``), looked at again soon (1 s, then
doubling with the time waited, at most :data:`RECHECK_MAX`; the consumer also wakes it
when the copy advances), until ``Facts.profile_wait`` has passed since it arrived; then
it is decided on what the copy holds, and a ``no_contact`` says it was decided behind.

The checks themselves are :func:`services.dispatcher.policy.decide`'s. The service
(:mod:`services.dispatcher.dispatching`) loads the facts, plans, writes and sends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.dispatcher.channels.base import Outgoing
from services.dispatcher.compose import Composer
from services.dispatcher.contacts import Contact
from services.dispatcher.messages import dead_letter, outcome, outcome_message
from services.dispatcher.offers.issue import coupon_issued_messages
from services.dispatcher.offers.template import pools_in
from services.dispatcher.policy import (
    Action,
    Decision,
    Preferences,
    SendPolicy,
    Sent,
    Situation,
    decide,
    not_before,
)
from services.dispatcher.repository import DeliveryUpdate
from services.dispatcher.templates import TemplateDefinition, TemplateError, _sources
from shared.events.base import Position
from shared.events.channels import Channel
from shared.events.dispatch_outcomes import DispatchOutcome, Reason, Status
from shared.events.dispatch_requests import DispatchRequest
from shared.kafka.producer import Message


@dataclass(frozen=True, slots=True)
class Template:
    """The template version a request renders."""

    version: int
    definition: TemplateDefinition


@dataclass(frozen=True, slots=True)
class Facts:
    """What a decision reads about one request besides the policy and the clock."""

    contact: Contact | None
    #: the version to render, or why there is none
    template: Template | str
    preferences: Preferences = field(default_factory=Preferences)
    #: the customer's sends inside the caps' longest window (this batch's included)
    recent: Sequence[Sent] = ()
    topic_defaults: Mapping[str, bool] = field(default_factory=dict)
    #: when the send-time policy allows the send, decided on arrival (``None``: now)
    not_before: datetime | None = None
    #: opens and clicks by UTC hour, for a best-time send decided now
    engagement: Mapping[int, int] = field(default_factory=dict)
    #: the channels a provider is configured for
    channels: frozenset[Channel] = frozenset(Channel)
    webhook_default: str | None = None
    #: pool → the code drawn for this dispatch (:func:`pools_wanted` says which)
    codes: Mapping[str, str] = field(default_factory=dict)
    #: how far the profile copy folded ``customer.events`` (``None``: no copy, or no
    #: position known)
    folded: Position | None = None
    #: how long the request has waited since it arrived (a freshness wait's clock)
    waited: timedelta = timedelta(0)
    #: the most a request waits for the profile copy to reach its trigger
    profile_wait: timedelta = timedelta(minutes=10)


#: the longest pause between two looks at a request waiting for its profile
RECHECK_MAX = timedelta(seconds=30)
_RECHECK_FIRST = timedelta(seconds=1)


def behind(request: DispatchRequest, facts: Facts) -> bool:
    """Whether the customer's profile copy has not yet folded the request's trigger
    (an erased customer is final: never behind)."""
    if request.requires is None:
        return False
    if facts.contact is not None and facts.contact.erased:
        return False
    return not request.requires.reached_by(facts.folded)


def waits_for_profile(request: DispatchRequest, facts: Facts, now: datetime) -> bool:
    """Behind, the wait's bound not reached, and the request not expiring before the
    next look: the request is not decided yet."""
    if facts.waited >= facts.profile_wait or not behind(request, facts):
        return False
    return request.expires_at is None or request.expires_at > next_look(facts, now)


def next_look(facts: Facts, now: datetime) -> datetime:
    """When a request waiting for its profile is looked at again (never past the
    bound)."""
    return now + min(recheck_after(facts.waited), facts.profile_wait - facts.waited)


def recheck_after(waited: timedelta) -> timedelta:
    """The pause before looking again at a request that waited ``waited``: 1 s, then
    about the time waited so far (so looks double), at most :data:`RECHECK_MAX`."""
    return min(max(_RECHECK_FIRST, waited), RECHECK_MAX)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message decided and rendered, to hand to its provider."""

    request: DispatchRequest
    outgoing: Outgoing
    template_version: int


@dataclass(frozen=True, slots=True)
class Plan:
    action: Action
    update: DeliveryUpdate
    #: ``None`` for a send: its outcome comes once the provider answered
    outcome: DispatchOutcome | None = None
    #: when a deferral fires again
    timer: datetime | None = None
    #: the message to hand over (a send)
    send: Claimed | None = None
    #: to the outbox: the outcome, a dead letter, the coupons a send issued
    messages: tuple[Message, ...] = ()
    #: the decision's channel (a send's, a deferral's), for the caps of the batch
    channel: Channel | None = None


def judge(request: DispatchRequest, facts: Facts, policy: SendPolicy, now: datetime) -> Decision:
    """Which action, on which channel, before anything is rendered."""
    if isinstance(facts.template, str):
        return Decision(Action.FAIL, reason=f"{Reason.TEMPLATE_ERROR}: {facts.template}")
    definition = facts.template.definition
    situation = Situation(
        contact=facts.contact,
        preferences=facts.preferences,
        recent=facts.recent,
        template_channels=frozenset(definition.channels() & facts.channels),
        topic=request.subscription_topic or definition.subscription_topic,
        topic_defaults=facts.topic_defaults,
        not_before=send_time(request, facts, policy),
        webhook_default=facts.webhook_default,
    )
    return decide(request, situation, policy, now)


def send_time(request: DispatchRequest, facts: Facts, policy: SendPolicy) -> datetime:
    """When the request's send-time policy allows it (kept from its arrival)."""
    if facts.not_before is not None:
        return facts.not_before
    return not_before(request, facts.contact, policy, facts.engagement)


def pools_wanted(decision: Decision, facts: Facts) -> set[str]:
    """The coupon pools the message would draw a code from (none unless it is sent)."""
    if decision.action is not Action.SEND or decision.channel is None:
        return set()
    if isinstance(facts.template, str):
        return set()
    contact = facts.contact
    variant = facts.template.definition.variant(
        decision.channel, contact.locale if contact else None
    )
    if variant is None:
        return set()
    return pools_in(source for _, source, _ in _sources(variant))


def plan(
    request: DispatchRequest,
    facts: Facts,
    policy: SendPolicy,
    now: datetime,
    composer: Composer,
) -> Plan:
    """The request's next step; see the module docstring."""
    if waits_for_profile(request, facts, now):
        return waiting_for_profile(request, facts, now)
    stale = behind(request, facts)
    decision = judge(request, facts, policy, now)
    if stale and decision.action is Action.SUPPRESS and decision.reason == Reason.NO_CONTACT:
        waited = int(facts.waited.total_seconds())
        decision = Decision(
            Action.SUPPRESS,
            channel=decision.channel,
            reason=(
                f"{Reason.NO_CONTACT}: decided after waiting {waited} s for the profile "
                f"copy to reach the trigger ({Reason.PROFILE_BEHIND}, the bound)"
            ),
        )
    if isinstance(facts.template, str):
        return failed(request, now, decision.reason or Reason.TEMPLATE_ERROR)
    version = facts.template.version
    when = send_time(request, facts, policy)
    channel = decision.channel.value if decision.channel else None
    if decision.action is Action.DEFER:
        assert decision.until is not None
        result = outcome(
            request,
            Status.DEFERRED,
            now,
            channel=decision.channel,
            reason=decision.reason,
            deferred_until=decision.until,
            template_version=version,
        )
        return Plan(
            Action.DEFER,
            DeliveryUpdate(
                request.dispatch_id,
                "deferred",
                channel=channel,
                template_version=version,
                reason=decision.reason,
                not_before=when,
                deferred_until=decision.until,
            ),
            outcome=result,
            timer=decision.until,
            messages=(outcome_message(result),),
            channel=decision.channel,
        )
    if decision.action is Action.SUPPRESS:
        result = outcome(
            request,
            Status.SUPPRESSED,
            now,
            channel=decision.channel,
            reason=decision.reason,
            template_version=version,
        )
        return Plan(
            Action.SUPPRESS,
            DeliveryUpdate(
                request.dispatch_id,
                "suppressed",
                channel=channel,
                template_version=version,
                reason=decision.reason,
                not_before=when,
            ),
            outcome=result,
            messages=(outcome_message(result),),
        )
    if decision.action is Action.FAIL:
        return failed(request, now, decision.reason or Reason.TEMPLATE_ERROR, version)
    offers = composer.offers_for(request, facts.codes, now)
    try:
        outgoing = composer.compose(
            request, decision, facts.template.definition, facts.contact, offers
        )
    except TemplateError as exc:
        return failed(request, now, f"{Reason.TEMPLATE_ERROR}: {exc}", version)
    return Plan(
        Action.SEND,
        DeliveryUpdate(
            request.dispatch_id,
            "sending",
            channel=channel,
            template_version=version,
            not_before=when,
            sent_at=now,
        ),
        send=Claimed(request, outgoing, version),
        messages=tuple(coupon_issued_messages(request, decision, offers, now)),
        channel=decision.channel,
    )


def waiting_for_profile(request: DispatchRequest, facts: Facts, now: datetime) -> Plan:
    """Defer until the profile copy catches up: no outcome (nothing is decided yet), no
    send time or template version pinned (both are decided once it has)."""
    until = next_look(facts, now)
    return Plan(
        Action.DEFER,
        DeliveryUpdate(
            request.dispatch_id, "deferred", reason=Reason.PROFILE_BEHIND, deferred_until=until
        ),
        timer=until,
    )


def failed(
    request: DispatchRequest, now: datetime, reason: str, version: int | None = None
) -> Plan:
    """A request that fails for good: its outcome and its dead letter."""
    result = outcome(request, Status.FAILED, now, reason=reason, template_version=version)
    return Plan(
        Action.FAIL,
        DeliveryUpdate(request.dispatch_id, "failed", template_version=version, reason=reason),
        outcome=result,
        messages=(outcome_message(result), dead_letter(request, reason)),
    )
