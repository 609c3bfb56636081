"""``GET /v1/experiments/{journey}/{version}/{step}?mde=``: how many more users per arm the
sequential test expects to need for the marketer's minimum detectable effect."""

from __future__ import annotations

import orjson
from sqlalchemy import text

from services.metrics.stats import plan
from tests.integration.metrics.conftest import ADMIN, Stack


async def test_an_experiment_answers_its_plan_for_a_minimum_detectable_effect(
    stack: Stack,
) -> None:
    result = {
        "verdict": "no_winner_yet",
        "control": "a",
        "arms": [
            {"variant": "a", "exposed": 10_000, "converted": 500},
            {"variant": "b", "exposed": 9_800, "converted": 530},
        ],
    }
    async with stack.runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO metrics.experiments (journey_id, journey_version, step_id, control, "
                "result) VALUES ('plan-j', 1, 'split', 'a', CAST(:result AS jsonb))"
            ),
            {"result": orjson.dumps(result).decode()},
        )
    path = "/v1/experiments/plan-j/1/split"
    plain = await stack.client.get(path, headers=ADMIN)
    assert plain.status_code == 200 and plain.json()["plan"] is None

    answer = await stack.client.get(f"{path}?mde=0.1", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    found = answer.json()["plan"]
    expected = plan(0.05, 0.1, exposed_per_arm=9_800, alpha=stack.runtime.policy.alpha)
    assert found["tau"] == expected.tau
    assert found["fixed_horizon_per_arm"] == expected.fixed_horizon_per_arm
    assert expected.more_per_arm is not None and expected.more_per_arm > 0
    assert found["more_per_arm"] == expected.more_per_arm
    assert found["exposed_per_arm"] == 9_800 and found["baseline_rate"] == 0.05

    for bad in ("mde=0", "mde=-1", "mde=0.1&baseline=1.5", "mde=1e-300", "mde=9&baseline=0.2"):
        wrong = await stack.client.get(f"{path}?{bad}", headers=ADMIN)
        assert wrong.status_code == 422, (bad, wrong.text)
    empty = {"control": "a", "arms": [{"variant": "a", "exposed": 0, "converted": 0}]}
    async with stack.runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO metrics.experiments (journey_id, journey_version, step_id, control, "
                "result) VALUES ('plan-j', 2, 'split', 'a', CAST(:result AS jsonb))"
            ),
            {"result": orjson.dumps(empty).decode()},
        )
    unknown = await stack.client.get("/v1/experiments/plan-j/2/split?mde=0.1", headers=ADMIN)
    assert unknown.status_code == 422, unknown.text
    assert "baseline" in unknown.json()["detail"]
    given = await stack.client.get(
        "/v1/experiments/plan-j/2/split?mde=0.1&baseline=0.05", headers=ADMIN
    )
    assert given.status_code == 200 and given.json()["plan"]["baseline_rate"] == 0.05
