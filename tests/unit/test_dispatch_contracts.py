"""The rules of the dispatch contracts that the journey, the dispatcher and metrics rely on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.events.dispatch_outcomes import Status
from shared.events.dispatch_requests import (
    DispatchRequest,
    Priority,
    SendAtBestTime,
    SendAtLocalTime,
    dispatch_id_for,
)

NOW = datetime(2026, 11, 20, 10, tzinfo=UTC)
ids = st.text(min_size=1, max_size=40)


@given(run=ids, step=ids, attempt=st.integers(min_value=1, max_value=10))
def test_dispatch_id_is_deterministic_and_tells_attempts_apart(
    run: str, step: str, attempt: int
) -> None:
    first = dispatch_id_for(run_id=run, step_id=step, attempt=attempt)
    assert first == dispatch_id_for(run_id=run, step_id=step, attempt=attempt)
    assert first != dispatch_id_for(run_id=run, step_id=step, attempt=attempt + 1)


def test_dispatch_id_does_not_collide_on_joined_parts() -> None:
    assert dispatch_id_for(run_id="a:b", step_id="c") != dispatch_id_for(run_id="a", step_id="b:c")


def _request(**fields: object) -> DispatchRequest:
    base: dict[str, object] = {
        "dispatch_id": "d-1",
        "customer_id": "ada",
        "channels": ["email"],
        "template_id": "welcome",
        "requested_at": NOW,
    }
    return DispatchRequest.model_validate(base | fields)


def test_channels_fall_back_in_order_and_never_repeat() -> None:
    assert [c.value for c in _request(channels=["push", "email"]).channels] == ["push", "email"]
    with pytest.raises(ValidationError, match="must not repeat"):
        _request(channels=["email", "email"])
    with pytest.raises(ValidationError):
        _request(channels=[])


def test_send_time_is_chosen_by_its_kind() -> None:
    local = _request(send_time={"kind": "local_time", "at": "09:30", "weekdays": [1, 5]})
    assert isinstance(local.send_time, SendAtLocalTime)
    best = _request(send_time={"kind": "best_time"})
    assert isinstance(best.send_time, SendAtBestTime)
    with pytest.raises(ValidationError):
        _request(send_time={"kind": "local_time", "at": "09:30", "weekdays": [0]})
    with pytest.raises(ValidationError):
        _request(send_time={"kind": "whenever"})


def test_priorities_rank_critical_first() -> None:
    ranked = sorted(Priority, key=lambda p: p.rank, reverse=True)
    assert ranked[0] is Priority.CRITICAL and ranked[-1] is Priority.LOW


def test_final_decisions() -> None:
    assert {s for s in Status if s.is_final_decision} == {
        Status.SENT,
        Status.SUPPRESSED,
        Status.FAILED,
    }
