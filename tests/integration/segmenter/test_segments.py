"""Segments: validation, membership on events and as time passes, backfill, edits."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from tests.integration.segmenter.conftest import ADMIN, START, Stack
from tests.integration.segmenter.events import event, run_id


def tagged(run: str, rule: dict[str, Any]) -> dict[str, Any]:
    """Limit a rule to this test's customers (the module shares one database)."""
    return {
        "kind": "all",
        "rules": [{"kind": "trait", "trait": "run", "op": "eq", "value": run}, rule],
    }


async def create(stack: Stack, segment_id: str, rule: dict[str, Any]) -> dict[str, Any]:
    answer = await stack.client.post(
        "/v1/segments?wait=true",
        headers=ADMIN,
        json={"id": segment_id, "name": segment_id, "rule": rule},
    )
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def members(stack: Stack, segment_id: str) -> set[str]:
    answer = await stack.client.get(f"/v1/segments/{segment_id}/members", headers=ADMIN)
    assert answer.status_code == 200
    return set(answer.json()["customer_ids"])


async def eventually_members(stack: Stack, segment_id: str, expected: set[str]) -> None:
    for _ in range(200):
        if await members(stack, segment_id) == expected:
            return
        await asyncio.sleep(0.05)
    assert await members(stack, segment_id) == expected


@pytest.mark.parametrize(
    ("rule", "location"),
    [
        (
            {"kind": "event_count", "event": "X", "op": "gte", "count": 3, "within_days": 0},
            ["body", "rule", "event_count", "within_days"],
        ),
        ({"kind": "trait", "trait": "plan", "op": "like", "value": "x"}, ["body", "rule"]),
        (
            {"kind": "all", "rules": [{"kind": "trait", "trait": "a", "op": "in", "value": []}]},
            ["body", "rule", "all", "rules", 0],
        ),
        ({"kind": "nonsense"}, ["body", "rule"]),
    ],
    ids=["zero-window", "unknown-op", "empty-in", "unknown-kind"],
)
async def test_a_bad_rule_is_422_naming_the_part(
    stack: Stack, rule: dict[str, Any], location: list[Any]
) -> None:
    answer = await stack.client.post(
        "/v1/segments", headers=ADMIN, json={"name": "bad", "rule": rule}
    )
    assert answer.status_code == 422
    locations = [error["loc"] for error in answer.json()["errors"]]
    assert any(loc[: len(location)] == location for loc in locations), locations


async def test_unknown_segment_reference_and_cycles_are_422(stack: Stack) -> None:
    answer = await stack.client.post(
        "/v1/segments",
        headers=ADMIN,
        json={"name": "x", "rule": {"kind": "segment", "segment_id": "does-not-exist"}},
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert "does-not-exist" in problem["detail"]
    assert problem["type"] == "urn:tenure:problem:invalid"
    assert [e["loc"] for e in problem["errors"]] == [["body", "rule"]]
    run = run_id()
    await create(
        stack,
        f"a-{run}",
        tagged(run, {"kind": "trait", "trait": "x", "op": "exists", "value": True}),
    )
    await create(stack, f"b-{run}", {"kind": "segment", "segment_id": f"a-{run}"})
    cycle = await stack.client.put(
        f"/v1/segments/a-{run}",
        headers=ADMIN,
        json={"rule": {"kind": "segment", "segment_id": f"b-{run}"}},
    )
    assert cycle.status_code == 422
    assert "cycle" in cycle.text
    refused = await stack.client.delete(f"/v1/segments/a-{run}", headers=ADMIN)
    assert refused.status_code == 409


async def test_admin_token_is_required(stack: Stack) -> None:
    assert (await stack.client.get("/v1/segments")).status_code == 401
    wrong = await stack.client.get("/v1/segments", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert (await stack.client.get("/v1/segments/none", headers=ADMIN)).status_code == 404


async def test_window_segment_enters_on_events_and_exits_as_time_passes(stack: Stack) -> None:
    run, buyer = run_id(), f"buyer-{run_id()}"
    segment = f"repeat-{run}"
    await create(
        stack,
        segment,
        tagged(
            run,
            {
                "kind": "event_count",
                "event": "Order Completed",
                "op": "gte",
                "count": 3,
                "within_days": 30,
            },
        ),
    )
    await stack.send(event("identify", buyer, START - timedelta(days=20), traits={"run": run}))
    await stack.send(
        *[
            event("track", buyer, START - timedelta(days=d), event="Order Completed")
            for d in (10, 5, 1)
        ]
    )
    entered = await stack.changes_of(buyer, 1)
    assert entered[0]["segmentId"] == segment
    assert entered[0]["change"] == "entered"
    assert entered[0]["cause"] == "event"

    stack.clock.advance(days=15)  # the purchase 10 days before START is now 25 days old
    await asyncio.sleep(0.5)
    assert len(stack.changes_so_far(buyer)) == 1
    stack.clock.advance(days=6)  # now 31 days old: only two purchases are in the window
    exited = await stack.changes_of(buyer, 2)
    assert exited[1]["change"] == "exited"
    assert exited[1]["cause"] == "time"
    assert await members(stack, segment) == set()


async def test_inactivity_segment_is_entered_when_time_passes(stack: Stack) -> None:
    run, customer = run_id(), f"idle-{run_id()}"
    segment = f"inactive-{run}"
    await create(
        stack, segment, tagged(run, {"kind": "last_event", "event": None, "older_than_days": 30})
    )
    await stack.send(
        event("identify", customer, stack.clock.now, traits={"run": run}),
        event("track", customer, stack.clock.now, event="Logged In"),
    )
    await stack.profile(customer, until=lambda p: p["events"])
    await asyncio.sleep(0.3)
    assert await members(stack, segment) == set()
    stack.clock.advance(days=29, hours=23)
    await asyncio.sleep(0.3)
    assert await members(stack, segment) == set()
    stack.clock.advance(hours=2)
    await eventually_members(stack, segment, {customer})
    change = (await stack.changes_of(customer, 1))[0]
    assert (change["change"], change["cause"]) == ("entered", "time")

    # coming back ends it at once
    await stack.send(event("track", customer, stack.clock.now, event="Logged In"))
    exited = await stack.changes_of(customer, 2)
    assert (exited[1]["change"], exited[1]["cause"]) == ("exited", "event")


async def test_new_segment_is_backfilled_and_an_edit_recomputes_it(stack: Stack) -> None:
    run = run_id()
    pro, free = f"pro-{run}", f"free-{run}"
    await stack.send(
        event(
            "identify",
            pro,
            stack.clock.now - timedelta(days=2),
            traits={"run": run, "plan": "pro", "seats": 12},
        ),
        event(
            "identify",
            free,
            stack.clock.now - timedelta(days=2),
            traits={"run": run, "plan": "free", "seats": 1},
        ),
    )
    await stack.profile(pro)
    await stack.profile(free)
    segment = f"paying-{run}"
    created = await create(
        stack, segment, tagged(run, {"kind": "trait", "trait": "plan", "op": "eq", "value": "pro"})
    )
    assert (created["version"], created["status"], created["members"]) == (1, "ready", 1)
    assert await members(stack, segment) == {pro}
    entered = await stack.changes_of(pro, 1)
    assert (entered[0]["cause"], entered[0]["segmentVersion"]) == ("segment_edit", 1)

    edited = await stack.client.put(
        f"/v1/segments/{segment}?wait=true",
        headers=ADMIN,
        json={"rule": tagged(run, {"kind": "trait", "trait": "seats", "op": "gte", "value": 1})},
    )
    assert edited.status_code == 200
    assert edited.json()["version"] == 2
    assert await members(stack, segment) == {pro, free}
    assert len(stack.changes_so_far(pro)) == 1  # stayed in: no change for pro
    joined = await stack.changes_of(free, 1)
    assert (joined[0]["change"], joined[0]["segmentVersion"]) == ("entered", 2)
    history = await stack.client.get(f"/v1/segments/{segment}/versions", headers=ADMIN)
    assert [v["version"] for v in history.json()] == [1, 2]

    assert (await stack.client.delete(f"/v1/segments/{segment}", headers=ADMIN)).status_code == 204
    left = await stack.changes_of(free, 2)
    assert left[1]["change"] == "exited"
    assert (await stack.client.get(f"/v1/segments/{segment}", headers=ADMIN)).status_code == 404


async def test_a_backfill_sets_the_timers_its_windows_need(stack: Stack) -> None:
    """Members found by a backfill leave when their events leave the window, though no
    event of theirs arrives after the segment was made."""
    run, buyer = run_id(), f"backfilled-{run_id()}"
    bought = f"Bought {run}"  # an event no other segment reads: no timer comes from them
    await stack.send(
        event("identify", buyer, stack.clock.now - timedelta(days=3), traits={"run": run}),
        event("track", buyer, stack.clock.now - timedelta(days=3), event=bought),
    )
    await stack.profile(buyer, until=lambda p: p["events"])
    segment = f"bought-7d-{run}"
    rule = {"kind": "event_count", "event": bought, "op": "gte", "count": 1, "within_days": 7}
    created = await create(stack, segment, tagged(run, rule))
    assert created["members"] == 1
    stack.clock.advance(days=5)  # the purchase day is now 8 days back
    changes = await stack.changes_of(buyer, 2)
    assert [(c["change"], c["cause"]) for c in changes] == [
        ("entered", "segment_edit"),
        ("exited", "time"),
    ]


async def test_a_segment_can_read_another_segment(stack: Stack) -> None:
    run, vip = run_id(), f"vip-{run_id()}"
    big = f"big-spenders-{run}"
    await create(
        stack,
        big,
        tagged(
            run,
            {
                "kind": "event_value",
                "event": "Order Completed",
                "aggregate": "sum",
                "op": "gte",
                "value": 500,
                "within_days": 365,
            },
        ),
    )
    await create(
        stack,
        f"vip-pro-{run}",
        {
            "kind": "all",
            "rules": [
                {"kind": "segment", "segment_id": big},
                {"kind": "trait", "trait": "plan", "op": "eq", "value": "pro"},
            ],
        },
    )
    await stack.send(
        event(
            "identify", vip, stack.clock.now - timedelta(days=1), traits={"run": run, "plan": "pro"}
        ),
        event(
            "track",
            vip,
            stack.clock.now - timedelta(hours=3),
            event="Order Completed",
            properties={"revenue": 600},
        ),
    )
    changes = await stack.changes_of(vip, 2)
    assert [c["segmentId"] for c in changes] == [big, f"vip-pro-{run}"]


async def test_preview_counts_matching_profiles_without_saving(stack: Stack) -> None:
    run = run_id()
    ids = [f"p-{run}-{i}" for i in range(5)]
    await stack.send(
        *[
            event(
                "identify", c, stack.clock.now - timedelta(days=1), traits={"run": run, "score": i}
            )
            for i, c in enumerate(ids)
        ]
    )
    for c in ids:
        await stack.profile(c)
    answer = await stack.client.post(
        "/v1/segments/preview",
        headers=ADMIN,
        json={
            "rule": tagged(run, {"kind": "trait", "trait": "score", "op": "gte", "value": 3}),
            "sample_size": 10,
        },
    )
    assert answer.status_code == 200
    assert answer.json()["count"] == 2
    assert sorted(answer.json()["sample"]) == sorted(ids[3:])


async def test_a_change_made_by_an_event_carries_the_position_its_profile_folded(
    stack: Stack,
) -> None:
    run = run_id()
    await create(
        stack,
        f"pos-{run}",
        tagged(run, {"kind": "trait", "trait": "vip", "op": "eq", "value": True}),
    )
    customer = f"c-{run}"
    await stack.send(event("identify", customer, START, traits={"run": run, "vip": True}))
    (change,) = await stack.changes_of(customer, 1)
    profile = await stack.profiles.wait_for(lambda r: r.key == customer.encode())
    import orjson

    assert change["position"] == orjson.loads(profile.value)["folded"]
