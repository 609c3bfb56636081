"""The admin API: validation with the step at fault, lifecycle, runs, stop, simulate,
diagram."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from shared.events.customer_events import TOPIC, CustomerEvent
from tests.integration.journey.conftest import ADMIN, START, Stack, track
from tests.integration.journey.test_steps import customer, name


def simple(trigger: str) -> dict[str, Any]:
    return {
        "triggers": [{"kind": "event", "event": trigger}],
        "steps": [
            {"id": "w", "type": "wait", "duration": "P1D", "next": "mail"},
            {"id": "mail", "type": "send", "channels": ["email"], "template_id": "t", "next": "x"},
            {"id": "x", "type": "exit"},
        ],
    }


async def test_the_api_needs_the_admin_token(stack: Stack) -> None:
    assert (await stack.client.get("/v1/journeys")).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await stack.client.get("/v1/journeys", headers=wrong)).status_code == 401
    assert (await stack.client.get("/healthz")).status_code == 200
    # ready once the consumer has joined its group (a few seconds on the embedded broker)
    for _ in range(240):
        ready = await stack.client.get("/readyz")
        if ready.status_code == 200:
            break
        await asyncio.sleep(0.25)
    assert ready.status_code == 200, ready.text
    metrics = await stack.client.get("/metrics")
    assert "tenure_journey_events_skipped_total" in metrics.text


async def test_validation_names_the_step_at_fault(stack: Stack) -> None:
    document = simple("X")
    document["steps"][1]["next"] = "nowhere"
    answer = await stack.client.post(
        "/v1/journeys/validate", json={"definition": document}, headers=ADMIN
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    (error,) = problem["errors"]
    assert error["msg"] == "step 'mail' (steps[1]): goes to 'nowhere', which is not a step"
    assert problem["detail"].endswith(error["msg"]) and problem["request_id"]
    loop = simple("X")
    loop["steps"] = [
        {
            "id": "b",
            "type": "branch",
            "cases": [{"when": {"kind": "segment", "segment_id": "s"}, "next": "x"}],
            "otherwise": "b",
        },
        {"id": "x", "type": "exit"},
    ]
    answer = await stack.client.post(
        "/v1/journeys/validate", json={"definition": loop}, headers=ADMIN
    )
    assert "loops back without a wait: b -> b" in answer.json()["errors"][0]["msg"]
    missing = simple("X")
    del missing["steps"][0]["next"]
    answer = await stack.client.post(
        "/v1/journeys", json={"name": "n", "definition": missing}, headers=ADMIN
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["loc"][:4] == ["body", "definition", "steps", 0]
    good = await stack.client.post(
        "/v1/journeys/validate", json={"definition": simple("Y")}, headers=ADMIN
    )
    assert good.status_code == 200 and good.json() == {
        "valid": True,
        "steps": 3,
        "reads_events": ["Y"],
    }


async def test_lifecycle_runs_and_stop(stack: Stack) -> None:
    trigger = name("Joined")
    journey_id = f"life-{uuid.uuid4().hex[:6]}"
    created = await stack.client.post(
        "/v1/journeys",
        json={"id": journey_id, "name": "Life", "definition": simple(trigger)},
        headers=ADMIN,
    )
    assert created.status_code == 201 and created.json()["status"] == "draft"
    again = await stack.client.post(
        "/v1/journeys",
        json={"id": journey_id, "name": "x", "definition": simple(trigger)},
        headers=ADMIN,
    )
    assert again.status_code == 409
    assert again.json()["type"] == "urn:tenure:problem:conflict"
    assert again.json()["detail"] == f"journey {journey_id!r} already exists"
    a = customer()
    await stack.consumed(
        await stack.send(TOPIC, track(a, trigger, stack.clock.now))
    )  # a draft runs nothing
    assert (
        await stack.client.post(f"/v1/journeys/{journey_id}/pause", headers=ADMIN)
    ).status_code == 409
    await stack.client.post(f"/v1/journeys/{journey_id}/publish", headers=ADMIN)
    paused = await stack.client.post(f"/v1/journeys/{journey_id}/pause", headers=ADMIN)
    assert paused.json()["status"] == "paused"
    b = customer()
    await stack.consumed(await stack.send(TOPIC, track(b, trigger, stack.clock.now)))  # paused
    await stack.client.post(f"/v1/journeys/{journey_id}/resume", headers=ADMIN)
    c, d = customer(), customer()
    await stack.track(c, trigger)
    await stack.track(d, trigger)
    (run_c,) = await stack.customer_runs(c, until=lambda runs: len(runs) == 1)
    await stack.customer_runs(d, until=lambda runs: len(runs) == 1)
    assert await stack.customer_runs(a) == [] and await stack.customer_runs(b) == []
    assert run_c["step_id"] == "w" and run_c["waiting"]["kind"] == "duration"

    listed = await stack.client.get(f"/v1/journeys/{journey_id}/runs?status=active", headers=ADMIN)
    assert {r["customer_id"] for r in listed.json()["runs"]} == {c, d}
    stopped = await stack.client.post(
        f"/v1/runs/{run_c['run_id']}/stop", json={"detail": "asked"}, headers=ADMIN
    )
    assert stopped.json()["status"] == "exited" and stopped.json()["exit_reason"] == "stopped"
    events = await stack.run_events(c, 4)
    assert events[-1]["kind"] == "exited" and events[-1]["detail"] == "asked"
    assert (await stack.client.post("/v1/runs/nope/stop", headers=ADMIN)).status_code == 404

    diagram = await stack.client.get(f"/v1/journeys/{journey_id}/diagram", headers=ADMIN)
    body = diagram.json()
    assert body["mermaid"].startswith("flowchart TD")
    assert "w: wait 1d<br/>entered 2 · waiting 1 · converted 0 · exited 1" in body["mermaid"]
    text = await stack.client.get(f"/v1/journeys/{journey_id}/diagram?format=text", headers=ADMIN)
    assert text.headers["content-type"].startswith("text/plain")

    archived = await stack.client.post(f"/v1/journeys/{journey_id}/archive", headers=ADMIN)
    assert archived.json()["status"] == "archived"
    (run_d,) = await stack.customer_runs(d)
    assert run_d["exit_reason"] == "archived"
    stack.clock.advance(days=2)
    assert stack.dispatches_so_far(d) == []
    assert (
        await stack.client.delete(f"/v1/journeys/{journey_id}", headers=ADMIN)
    ).status_code == 409


async def test_a_redelivered_trigger_starts_one_run(stack: Stack) -> None:
    trigger = name("Signed Up")
    await stack.journey(simple(trigger))
    who = customer()
    sent = await stack.track(who, trigger)
    again = await stack.send(TOPIC, CustomerEvent.model_validate(sent.model_dump()))
    await stack.consumed(again)  # the same messageId, consumed again
    assert len(await stack.customer_runs(who)) == 1


async def test_simulate_walks_a_history_and_sends_nothing(stack: Stack) -> None:
    cart, order = name("Cart Updated"), name("Order Completed")
    journey_id = f"sim-{uuid.uuid4().hex[:6]}"
    from tests.integration.journey.test_steps import abandoned_cart

    await stack.client.post(
        "/v1/journeys",
        json={"id": journey_id, "name": "sim", "definition": abandoned_cart(cart, order)},
        headers=ADMIN,
    )
    at = START.isoformat()
    answer = await stack.client.post(
        f"/v1/journeys/{journey_id}/simulate",
        json={
            "customer_id": "simulated",
            "history": [
                {"at": at, "event": cart, "properties": {"cart_id": "k1"}},
                {"at": "2026-06-01T13:00:00Z", "event": cart, "properties": {"cart_id": "k1"}},
                {"at": "2026-06-01T20:00:00Z", "event": order, "properties": {"cart_id": "k1"}},
            ],
        },
        headers=ADMIN,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    (run,) = body["runs"]
    assert run["path"] == ["wait_order", "remind", "done"]
    assert [m["templateId"] for m in run["messages"]] == ["cart-reminder"]
    assert run["exit_reason"] == "goal"  # the order 8 h later, within the 3-day window
    assert body["refused"] == [{"at": "2026-06-01T13:00:00Z", "input": 1, "reason": "entry_rule"}]
    assert stack.dispatches_so_far("simulated") == []


async def test_summaries_page_journeys_with_counts_and_reserve_their_id(stack: Stack) -> None:
    prefix = f"sum-{uuid.uuid4().hex[:6]}-"
    for n in range(3):
        created = await stack.client.post(
            "/v1/journeys",
            json={"id": f"{prefix}{n}", "name": "S", "definition": simple(name("S"))},
            headers=ADMIN,
        )
        assert created.status_code == 201, created.text
    first = await stack.client.get(
        "/v1/journeys/summaries", params={"after": prefix, "limit": 2}, headers=ADMIN
    )
    page = first.json()
    assert [j["id"] for j in page["journeys"]] == [f"{prefix}0", f"{prefix}1"]
    assert page["journeys"][0] | {"updated_at": None} == {
        "id": f"{prefix}0",
        "name": "S",
        "status": "draft",
        "version": None,
        "updated_at": None,
        "active": 0,
        "converted": 0,
        "exited": 0,
    }
    rest = await stack.client.get(
        "/v1/journeys/summaries",
        params={"after": page["next_after"], "limit": 500},
        headers=ADMIN,
    )
    assert rest.json()["journeys"][0]["id"] == f"{prefix}2"
    for reserved in ("summaries", ".", ".."):
        refused = await stack.client.post(
            "/v1/journeys",
            json={"id": reserved, "name": "S", "definition": simple(name("S"))},
            headers=ADMIN,
        )
        assert refused.status_code == 422, reserved
