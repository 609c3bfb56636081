"""The decision as a pure function: properties of :func:`services.dispatcher.plan.plan`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatcher.compose import Composer
from services.dispatcher.contacts import Contact
from services.dispatcher.links import LinkSigner
from services.dispatcher.plan import (
    RECHECK_MAX,
    Facts,
    Template,
    behind,
    plan,
    recheck_after,
)
from services.dispatcher.policy import Action, Preferences, SendPolicy, Sent
from services.dispatcher.templates import TemplateDefinition
from shared.events.base import Position
from shared.events.channels import Channel
from shared.events.dispatch_outcomes import Reason, Status
from shared.events.dispatch_requests import DLQ_TOPIC, DispatchRequest, Priority

COMPOSER = Composer(LinkSigner(secret="a-secret-for-the-plan-tests", base_url="http://t.test"))
TEMPLATE = TemplateDefinition.model_validate(
    {
        "name": "welcome",
        "variants": [
            {"channel": "email", "subject": "Hi {{ customer.id }}", "html": "<p>Hi</p>"},
            {"channel": "push", "title": "Hi", "text": "Hello"},
        ],
    }
)
BROKEN = TemplateDefinition.model_validate(
    {"name": "broken", "variants": [{"channel": "email", "subject": "x", "text": "{{ 1 / 0 }}"}]}
)
_FIRST = datetime(2026, 1, 1)  # noqa: DTZ001 (hypothesis wants naive bounds)
_LAST = datetime(2027, 1, 1)  # noqa: DTZ001

#: positions in customer.events, on few partitions and offsets so that they often meet
positions = st.builds(Position, partition=st.integers(0, 1), offset=st.integers(0, 5))

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Pacific/Apia", "Nowhere/X"]


@st.composite
def cases(draw: st.DrawFn) -> tuple[DispatchRequest, Facts, SendPolicy, datetime]:
    now = draw(st.datetimes(min_value=_FIRST, max_value=_LAST)).replace(tzinfo=UTC)
    expires = draw(st.none() | st.integers(min_value=-3_600, max_value=3 * 86_400))
    send_time = draw(
        st.sampled_from(
            [
                {"kind": "now"},
                {"kind": "local_time", "at": "10:00"},
                {"kind": "best_time", "defaultHour": 19, "withinHours": 24},
            ]
        )
    )
    fields: dict[str, Any] = {
        "dispatch_id": "d-1",
        "customer_id": "ada",
        "channels": draw(
            st.lists(st.sampled_from(list(Channel)), min_size=1, max_size=3, unique=True)
        ),
        "template_id": "welcome",
        "requested_at": now - timedelta(minutes=draw(st.integers(0, 600))),
        "priority": draw(st.sampled_from(list(Priority))),
        "send_time": send_time,
    }
    if expires is not None:
        fields["expires_at"] = now + timedelta(seconds=expires)
    requires = draw(st.none() | positions)
    if requires is not None:
        fields["requires"] = requires
    request = DispatchRequest.model_validate(fields)
    contact = draw(
        st.none()
        | st.just(Contact("ada", erased=True))
        | st.builds(
            Contact,
            customer_id=st.just("ada"),
            email=st.sampled_from([None, "ada@example.com"]),
            timezone=st.sampled_from([None, *ZONES]),
            traits=st.fixed_dictionaries(
                {},
                optional={
                    "fcmToken": st.just("tok"),
                    "timezone": st.sampled_from(ZONES),
                },
            ),
        )
    )
    choices: list[Template | str] = [Template(1, TEMPLATE), Template(2, BROKEN), "no template"]
    template = draw(st.sampled_from(choices))
    recent = [
        Sent(draw(st.sampled_from([Channel.EMAIL, Channel.PUSH])), now - timedelta(minutes=m))
        for m in draw(st.lists(st.integers(0, 7 * 24 * 60), max_size=6))
    ]
    facts = Facts(
        contact=contact,
        template=template,
        preferences=Preferences(
            unsubscribed=draw(st.integers(0, 9)) == 0,
            channels=draw(st.fixed_dictionaries({}, optional={"email": st.booleans()})),
        ),
        recent=recent,
        folded=draw(st.none() | positions),
        waited=timedelta(seconds=draw(st.integers(0, 1_200))),
    )
    return request, facts, SendPolicy(), now


@settings(max_examples=150, deadline=None)
@given(cases())
def test_exactly_one_action_with_its_effects(case: Any) -> None:
    request, facts, policy, now = case
    result = plan(request, facts, policy, now, COMPOSER)
    status = {
        Action.SEND: "sending",
        Action.DEFER: "deferred",
        Action.SUPPRESS: "suppressed",
        Action.FAIL: "failed",
    }[result.action]
    assert result.update.dispatch_id == request.dispatch_id
    assert result.update.status == status
    # a send is handed over and has no outcome yet, nor has a wait for the profile copy
    # (nothing is decided); every other action has its outcome
    assert (result.send is not None) == (result.action is Action.SEND)
    waiting = result.update.reason == Reason.PROFILE_BEHIND
    assert (result.outcome is None) == (result.action is Action.SEND or waiting)
    assert (result.timer is not None) == (result.action is Action.DEFER)
    if result.outcome is not None:
        assert (
            result.outcome.status
            == {
                Action.DEFER: Status.DEFERRED,
                Action.SUPPRESS: Status.SUPPRESSED,
                Action.FAIL: Status.FAILED,
            }[result.action]
        )
    dead_letters = [m for m in result.messages if m.topic == DLQ_TOPIC]
    assert len(dead_letters) == (1 if result.action is Action.FAIL else 0)
    if result.action is Action.SEND:
        assert result.send is not None and result.update.sent_at == now
        assert result.send.outgoing.channel in request.channels


@settings(max_examples=150, deadline=None)
@given(cases())
def test_a_deferral_waits_for_the_future_and_before_the_request_expires(case: Any) -> None:
    request, facts, policy, now = case
    result = plan(request, facts, policy, now, COMPOSER)
    if result.action is Action.DEFER:
        assert result.timer is not None and result.timer > now
        assert result.update.deferred_until == result.timer
        if request.expires_at is not None:
            assert result.timer < request.expires_at


@settings(max_examples=150, deadline=None)
@given(cases())
def test_critical_priority_is_exempt_from_caps_and_quiet_hours(case: Any) -> None:
    request, facts, policy, now = case
    critical = request.model_copy(update={"priority": Priority.CRITICAL})
    result = plan(critical, facts, policy, now, COMPOSER)
    assert result.update.reason not in (Reason.FREQUENCY_CAP, Reason.QUIET_HOURS)


@settings(max_examples=200, deadline=None)
@given(cases())
def test_nothing_is_sent_to_the_erased_the_unsubscribed_or_after_expiry(case: Any) -> None:
    request, facts, policy, now = case
    result = plan(request, facts, policy, now, COMPOSER)
    expired = request.expires_at is not None and request.expires_at <= now
    erased = facts.contact is not None and facts.contact.erased
    if expired or erased or facts.preferences.unsubscribed:
        assert result.action is not Action.SEND


@settings(max_examples=100, deadline=None)
@given(cases())
def test_planning_is_a_function_of_its_inputs(case: Any) -> None:
    request, facts, policy, now = case
    first, again = (plan(request, facts, policy, now, COMPOSER) for _ in range(2))
    assert (first.action, first.update, first.outcome, first.timer) == (
        again.action,
        again.update,
        again.outcome,
        again.timer,
    )


NIGHT_UTC = datetime(2026, 6, 1, 22, 0, tzinfo=UTC)  # 07:00 in Tokyo


def _tokyo(**contact: Any) -> Facts:
    return Facts(
        contact=Contact("ada", email="ada@example.com", **contact), template=Template(1, TEMPLATE)
    )


def _now_request() -> DispatchRequest:
    return DispatchRequest.model_validate(
        {
            "dispatch_id": "d-1",
            "customer_id": "ada",
            "channels": ["email"],
            "template_id": "welcome",
            "requested_at": NIGHT_UTC,
        }
    )


def test_the_timezone_trait_puts_22_utc_in_the_customers_day() -> None:
    policy = SendPolicy.model_validate(
        {"quiet_hours": {"start": "21:00", "end": "07:00"}, "caps": []}
    )
    sent = plan(
        _now_request(), _tokyo(traits={"timezone": "Asia/Tokyo"}), policy, NIGHT_UTC, COMPOSER
    )
    assert sent.action is Action.SEND
    # without the trait, the policy's default (UTC) is night: deferred to 07:00 UTC
    deferred = plan(_now_request(), _tokyo(), policy, NIGHT_UTC, COMPOSER)
    assert deferred.action is Action.DEFER and deferred.update.reason == Reason.QUIET_HOURS


def test_the_profiles_timezone_comes_before_the_trait_and_invalid_names_are_skipped() -> None:
    policy = SendPolicy.model_validate({"caps": []})  # quiet 21:00–09:00
    # the events' zone (UTC: 22:00, quiet) wins over the trait (Tokyo: 07:00... quiet too
    # before 09:00), so compare with a zone that is daytime: Honolulu (12:00)
    facts = _tokyo(timezone="UTC", traits={"timezone": "Pacific/Honolulu"})
    assert plan(_now_request(), facts, policy, NIGHT_UTC, COMPOSER).action is Action.DEFER
    facts = _tokyo(timezone="Not/AZone", traits={"timezone": "Pacific/Honolulu"})
    assert plan(_now_request(), facts, policy, NIGHT_UTC, COMPOSER).action is Action.SEND
    facts = _tokyo(traits={"timezone": 42})
    assert plan(_now_request(), facts, policy, NIGHT_UTC, COMPOSER).action is Action.DEFER


def test_a_template_that_does_not_render_fails_with_a_dead_letter() -> None:
    facts = Facts(contact=Contact("ada", email="ada@example.com"), template=Template(2, BROKEN))
    policy = SendPolicy.model_validate({"caps": [], "quiet_hours": {"enabled": False}})
    result = plan(_now_request(), facts, policy, NIGHT_UTC, COMPOSER)
    assert result.action is Action.FAIL
    assert (result.update.reason or "").startswith(Reason.TEMPLATE_ERROR)
    assert result.update.template_version == 2
    assert [m.topic for m in result.messages][-1] == DLQ_TOPIC


# --- freshness: a request waits (bounded) for the profile copy to reach its trigger ---


@settings(max_examples=200, deadline=None)
@given(cases())
def test_a_request_behind_its_profile_waits_with_no_outcome_until_the_bound(case: Any) -> None:
    request, facts, policy, now = case
    result = plan(request, facts, policy, now, COMPOSER)
    expires = request.expires_at
    if (
        behind(request, facts)
        and facts.waited < facts.profile_wait
        and (expires is None or expires > now + RECHECK_MAX)
    ):
        assert result.action is Action.DEFER
        assert result.update.status == "deferred"
        assert result.update.reason == Reason.PROFILE_BEHIND
        assert result.outcome is None and result.messages == () and result.send is None
        # the send time and the template are decided once the copy caught up
        assert result.update.not_before is None and result.update.template_version is None
        assert result.timer is not None and now < result.timer <= now + RECHECK_MAX
        # never beyond the bound: once it is reached the request is decided
        assert result.timer <= now - facts.waited + facts.profile_wait
    elif not behind(request, facts) or facts.waited >= facts.profile_wait:
        assert result.update.reason != Reason.PROFILE_BEHIND
    if result.update.reason == Reason.PROFILE_BEHIND and expires is not None:
        assert result.timer is not None and result.timer < expires  # never waits past it


@settings(max_examples=200, deadline=None)
@given(cases())
def test_a_copy_that_reached_the_trigger_decides_as_if_nothing_was_required(case: Any) -> None:
    request, facts, policy, now = case
    if behind(request, facts):
        return
    free = request.model_copy(update={"requires": None})
    first, again = (
        plan(request, facts, policy, now, COMPOSER),
        plan(free, facts, policy, now, COMPOSER),
    )
    assert (first.action, first.update, first.timer) == (again.action, again.update, again.timer)


@settings(max_examples=200, deadline=None)
@given(cases())
def test_past_the_bound_it_is_decided_and_a_no_contact_says_it_was_behind(case: Any) -> None:
    request, facts, policy, now = case
    if not behind(request, facts) or facts.waited < facts.profile_wait:
        return
    result = plan(request, facts, policy, now, COMPOSER)
    free = plan(request.model_copy(update={"requires": None}), facts, policy, now, COMPOSER)
    assert result.action is free.action
    if free.update.reason == Reason.NO_CONTACT:
        assert result.update.reason is not None
        assert result.update.reason.startswith(f"{Reason.NO_CONTACT}: ")
        assert Reason.PROFILE_BEHIND in result.update.reason
        assert result.outcome is not None and result.outcome.reason == result.update.reason
    else:
        assert result.update == free.update


@given(
    required=positions,
    folded=st.none() | positions,
)
def test_behind_means_no_copy_or_an_earlier_offset_on_the_same_partition(
    required: Position, folded: Position | None
) -> None:
    request = _now_request().model_copy(update={"requires": required})
    facts = Facts(contact=Contact("ada"), template=Template(1, TEMPLATE), folded=folded)
    expected = folded is None or (
        folded.partition == required.partition and folded.offset < required.offset
    )
    assert behind(request, facts) is expected
    erased = Facts(contact=Contact("ada", erased=True), template=Template(1, TEMPLATE))
    assert not behind(request, erased)  # nothing newer will come for an erased customer
    assert not behind(_now_request(), facts)  # nothing required


@given(st.integers(0, 3_600), st.integers(0, 3_600))
def test_looks_again_after_1_s_then_about_the_time_waited_at_most_30_s(a: int, b: int) -> None:
    first, second = sorted((timedelta(seconds=a), timedelta(seconds=b)))
    assert timedelta(seconds=1) <= recheck_after(first) <= recheck_after(second) <= RECHECK_MAX
    assert recheck_after(timedelta(0)) == timedelta(seconds=1)
