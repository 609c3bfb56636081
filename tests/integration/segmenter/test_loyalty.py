"""The loyalty program through the service: points earned once per event, tiers as
profile fields and segment changes, redemptions, expiry by the refresh, erasure."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from shared.events.profiles import ProfileUpdate
from tests.integration.segmenter.conftest import ADMIN, Stack
from tests.integration.segmenter.events import event, run_id
from tests.integration.segmenter.test_segments import create, eventually_members, tagged

PROGRAM = {
    "rules": [
        {"kind": "per_revenue", "id": "spend", "event": "Order Completed", "points_per_unit": 1},
        {"kind": "first_event", "id": "welcome", "event": "Order Completed", "points": 100},
        {"kind": "per_event", "id": "review", "event": "Review Submitted", "points": 25},
    ],
    "tiers": [
        {"name": "Member", "min_points": 0},
        {"name": "Silver", "min_points": 200},
        {"name": "Gold", "min_points": 500, "multiplier": 2},
    ],
    "expire_after_days": 30,
    "qualifying_days": 30,
}


async def standing(stack: Stack, customer: str, until: Any = None) -> dict[str, Any]:
    for _ in range(200):
        answer = await stack.client.get(f"/v1/loyalty/{customer}", headers=ADMIN)
        assert answer.status_code == 200, answer.text
        if until is None or until(answer.json()):
            return answer.json()  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError(answer.text)


async def test_points_tiers_segments_redemptions_and_expiry(stack: Stack) -> None:
    answer = await stack.client.get("/v1/loyalty/program", headers=ADMIN)
    assert answer.status_code == 404
    answer = await stack.client.put("/v1/loyalty/program", headers=ADMIN, json=PROGRAM)
    assert answer.status_code == 200, answer.text
    bad = await stack.client.put(
        "/v1/loyalty/program", headers=ADMIN, json={"tiers": [{"name": "A", "min_points": 5}]}
    )
    assert bad.status_code == 422

    run = run_id()
    now = stack.clock.now
    ada = f"ada-{run}"
    gold = f"gold-{run}"
    await create(stack, gold, tagged(run, {"kind": "loyalty_tier", "in": ["Gold"]}))
    first = event(
        "track",
        ada,
        now - timedelta(days=2),
        event="Order Completed",
        properties={"revenue": 150.7},
    )
    await stack.send(event("identify", ada, now - timedelta(days=3), traits={"run": run}), first)
    got = await standing(stack, ada, until=lambda s: s["points"] > 0)
    assert (got["points"], got["tier"], got["next_tier"]) == (250, "Silver", "Gold")
    assert got["points_to_next_tier"] == 250

    # a redelivered event earns nothing; a second order earns without a second bonus
    await stack.send(first)
    await stack.send(
        event(
            "track",
            ada,
            now - timedelta(days=1),
            event="Order Completed",
            properties={"revenue": 300},
        )
    )
    got = await standing(stack, ada, until=lambda s: s["points"] != 250)
    assert (got["points"], got["tier"]) == (550, "Gold")
    assert sorted(e["rule_id"] for e in got["history"]) == ["spend", "spend", "welcome"]
    await eventually_members(stack, gold, {ada})
    update = ProfileUpdate.from_bytes(
        (
            await stack.profiles.wait_for(
                lambda r: (
                    r.key == ada.encode()
                    and ProfileUpdate.from_bytes(r.value).computed.loyalty_tier == "Gold"
                )
            )
        ).value
    )
    assert update.computed.loyalty_points == 550

    # Gold earns double
    await stack.send(event("track", ada, now, event="Review Submitted"))
    got = await standing(stack, ada, until=lambda s: s["points"] != 550)
    assert got["points"] == 600

    # redemptions: idempotent by id, refused beyond the balance
    spend = await stack.client.post(
        f"/v1/loyalty/{ada}/redemptions", headers=ADMIN, json={"id": "r-1", "points": 100}
    )
    assert spend.status_code == 201, spend.text
    assert spend.json() == {"customer_id": ada, "redemption_id": "r-1", "points": 500}
    again = await stack.client.post(
        f"/v1/loyalty/{ada}/redemptions", headers=ADMIN, json={"id": "r-1", "points": 100}
    )
    assert (again.status_code, again.json()["points"]) == (200, 500)
    too_much = await stack.client.post(
        f"/v1/loyalty/{ada}/redemptions", headers=ADMIN, json={"id": "r-2", "points": 10_000}
    )
    assert too_much.status_code == 409
    assert too_much.json()["detail"] == f"{ada!r} has 500 points, 10000 asked"
    assert (await standing(stack, ada))["points"] == 500

    # 40 days later everything earned has expired and left the qualifying window
    stack.clock.advance(days=40)
    refreshed = await stack.client.post("/v1/loyalty/refresh", headers=ADMIN)
    assert refreshed.status_code == 200 and refreshed.json()["changed"] >= 1
    got = await standing(stack, ada)
    assert (got["points"], got["tier"], got["expired"]) == (0, "Member", 500)
    await eventually_members(stack, gold, set())
    exits = [c for c in await stack.changes_of(ada, 2) if c["segmentId"] == gold]
    assert [c["change"] for c in exits] == ["entered", "exited"]
    assert exits[-1]["cause"] == "score"


async def test_an_alias_brings_the_anonymous_points(stack: Stack) -> None:
    """(After the test above: the program is set.)"""
    run = run_id()
    now = stack.clock.now
    anonymous, known = f"anon-{run}", f"known-{run}"
    await stack.send(
        event(
            "track", None, now - timedelta(hours=2), anonymousId=anonymous, event="Review Submitted"
        ),
        event("identify", known, now - timedelta(hours=2), traits={"run": run}),
    )
    await standing(stack, anonymous, until=lambda s: s["points"] == 25)
    await stack.send(event("alias", known, now - timedelta(hours=1), previousId=anonymous))
    moved = await standing(stack, known, until=lambda s: len(s["history"]) == 1)
    assert [(e["rule_id"], e["points"]) for e in moved["history"]] == [("review", 25)]
    assert (await standing(stack, anonymous))["history"] == []


async def test_a_nul_character_in_the_program_is_a_422_not_a_500(stack: Stack) -> None:
    """Schemathesis found a NUL (which jsonb cannot hold) in a rule's event failing in
    asyncpg with a 500."""
    program = {"rules": [{"id": "r", "kind": "per_event", "points": 1, "event": "\x00"}]}
    answer = await stack.client.put("/v1/loyalty/program", headers=ADMIN, json=program)
    assert answer.status_code == 422, answer.text
    assert "`rules.0.event` contains a NUL character" in answer.json()["errors"][0]["msg"]
