"""Journey documents: fields, and a step graph that holds together (422 naming the step)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.journey.definition import JourneyDefinition, PropertyFilter, ValueTest

TRIGGER = [{"kind": "event", "event": "Order Completed"}]


def journey(*steps: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"triggers": TRIGGER, "steps": list(steps), **more}


def error_of(document: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        JourneyDefinition.model_validate(document)
    return str(caught.value.errors(include_url=False)[0]["msg"])


def test_a_complete_journey_round_trips() -> None:
    document = journey(
        {"id": "wait", "type": "wait", "duration": "P1D", "next": "mail"},
        {
            "id": "mail",
            "type": "send",
            "channels": ["email", "push"],
            "template_id": "thanks",
            "send_time": {"kind": "local_time", "at": "09:30", "weekdays": [1, 2]},
            "next": "opened",
        },
        {
            "id": "opened",
            "type": "wait_for_engagement",
            "send_step": "mail",
            "timeout": "P2D",
            "next": "done",
            "on_timeout": "done",
        },
        {"id": "done", "type": "exit"},
        goal={"event": "Order Completed", "within": "P7D"},
        holdout_percent=10,
    )
    parsed = JourneyDefinition.model_validate(document)
    again = JourneyDefinition.model_validate(parsed.model_dump(mode="json"))
    assert again == parsed
    assert parsed.first_step == "wait"
    assert "Email Opened" in parsed.event_names()


def test_a_next_to_no_step_is_named() -> None:
    message = error_of(journey({"id": "a", "type": "wait", "duration": 60, "next": "nowhere"}))
    assert message == "step 'a' (steps[0]): goes to 'nowhere', which is not a step"


def test_a_missing_next_is_a_field_error_of_that_step() -> None:
    with pytest.raises(ValidationError) as caught:
        JourneyDefinition.model_validate(journey({"id": "a", "type": "wait", "duration": 60}))
    assert caught.value.errors()[0]["loc"] == ("steps", 0, "wait", "next")


def test_an_unreachable_step_is_named() -> None:
    message = error_of(journey({"id": "a", "type": "exit"}, {"id": "b", "type": "exit"}))
    assert message == "step 'b' (steps[1]): is unreachable from the first step"


def test_a_loop_without_a_wait_is_refused_and_one_with_a_wait_accepted() -> None:
    branch = {
        "id": "check",
        "type": "branch",
        "cases": [
            {"when": {"kind": "trait", "trait": "vip", "op": "eq", "value": True}, "next": "out"}
        ],
        "otherwise": "mail",
    }
    mail = {
        "id": "mail",
        "type": "send",
        "channels": ["email"],
        "template_id": "t",
        "next": "check",
    }
    message = error_of(journey(branch, mail, {"id": "out", "type": "exit"}))
    assert "loops back without a wait: check -> mail -> check" in message
    waited = dict(mail, next="pause")
    pause = {"id": "pause", "type": "wait", "duration": "P1D", "next": "check"}
    JourneyDefinition.model_validate(journey(branch, waited, pause, {"id": "out", "type": "exit"}))


def test_repeated_ids_variants_and_bad_references() -> None:
    assert "another step has this id" in error_of(
        journey(
            {"id": "a", "type": "wait", "duration": 5, "next": "a"}, {"id": "a", "type": "exit"}
        )
    )
    split = {
        "id": "s",
        "type": "split",
        "variants": [
            {"name": "A", "weight": 1, "next": "x"},
            {"name": "A", "weight": 1, "next": "x"},
        ],
    }
    assert "variant names must be distinct" in error_of(journey(split, {"id": "x", "type": "exit"}))
    engage = {
        "id": "e",
        "type": "wait_for_engagement",
        "send_step": "x",
        "timeout": 60,
        "next": "x",
        "on_timeout": "x",
    }
    assert "is not a send step" in error_of(journey(engage, {"id": "x", "type": "exit"}))
    assert "not an IANA timezone" in error_of(
        journey({"id": "x", "type": "exit"}, timezone="Mars/Olympus")
    )
    assert "cooldown" in error_of(journey({"id": "x", "type": "exit"}, entry={"mode": "cooldown"}))


@pytest.mark.parametrize(
    ("op", "value", "actual", "expected"),
    [
        ("gt", 100, 150, True),
        ("gt", 100, 100.0, False),
        ("gt", 100, "150", False),  # no comparison across types, as in the segmenter
        ("eq", 1, 1.0, True),
        ("eq", "1", 1, False),
        ("neq", "a", None, True),
        ("in", ["a", 2], 2.0, True),
        ("contains", "sh", "shoes", True),
        ("contains", 3, [1, 3], True),
        ("exists", True, None, False),
        ("exists", False, None, True),
        ("lte", "m", "a", True),
    ],
)
def test_value_tests_follow_jsonb(op: str, value: Any, actual: Any, expected: bool) -> None:
    assert ValueTest(op=op, value=value).test(actual) is expected


def test_a_filter_reads_dotted_paths() -> None:
    from services.journey.definition import filters_match

    f = PropertyFilter(property="cart.total", op="gte", value=50)
    assert filters_match((f,), {"cart": {"total": 80}})
    assert not filters_match((f,), {"cart": {"total": 20}})
    assert filters_match((PropertyFilter(property="a.b", op="eq", value=1),), {"a.b": 1})
