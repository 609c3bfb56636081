"""Experiment evaluation: a verdict for every split and holdout, and the decisions
the journey service acts on.

Every ``evaluate_interval_s`` (and on demand) one transaction, under an advisory
lock (one process evaluates at a time; the others skip the round), computes each
verdict from the counts (:func:`services.metrics.stats.decide`), keeps the running minimum of each
variant's sequential p-value (what keeps the test valid however often it is looked
at), and, for a split whose verdict is ``winner`` for the first time, writes one
``experiment.decisions`` message to the outbox (``decision_id`` is set once, so the
decision goes out once).

:func:`plan_experiment` answers the marketer's question "how many more users per arm?"
for a minimum detectable effect (:func:`services.metrics.stats.plan`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from services.metrics.metrics import DECISIONS, EXPERIMENT_P_VALUE, EXPERIMENT_RATE
from services.metrics.models import HOLDOUT_STEP, HOLDOUT_VARIANT, outbox
from services.metrics.stats import Arm, Decision, Policy, Verdict, decide, plan, tau_for_effect
from shared.db.engine import driver_connection, long_statements
from shared.db.locks import lock_name, try_xact_lock
from shared.db.outbox import enqueue
from shared.events.experiment_decisions import ExperimentDecision, VariantResult
from shared.events.experiment_decisions import Verdict as DecisionVerdict
from shared.events.registry import EXPERIMENT_DECISIONS
from shared.kafka.producer import Message

log = logging.getLogger(__name__)

Driver = Any
EVALUATION_LOCK = lock_name("metrics", "experiments")


def default_control(step_id: str, variants: list[str]) -> str:
    """The arm others are compared with: the holdout, a variant named ``control``,
    else ``a``, else the first in order."""
    for name in (HOLDOUT_VARIANT if step_id == HOLDOUT_STEP else "control", "a", "A"):
        if name in variants:
            return name
    return sorted(variants)[0]


async def evaluate_all(engine: AsyncEngine, *, policy: Policy, now: datetime) -> int:
    """Evaluate every experiment; return how many decisions were enqueued."""
    async with engine.begin() as conn:
        await long_statements(conn)
        if not await try_xact_lock(conn, EVALUATION_LOCK):
            log.info("another process is evaluating the experiments")
            return 0
        driver = await driver_connection(conn)
        experiments = await driver.fetch(
            """
            SELECT journey_id, journey_version, step_id, control, min_p_values::text,
                   decision_id
            FROM metrics.experiments ORDER BY journey_id, journey_version, step_id
            """
        )
        if not experiments:
            return 0
        counts = await driver.fetch(
            "SELECT journey_id, journey_version, step_id, variant, exposed, converted "
            "FROM metrics.experiment_counts"
        )
        guardrails = await driver.fetch(
            """
            SELECT journey_id, variant,
                   sum(count) FILTER (WHERE metric = 'sent'),
                   sum(count) FILTER (WHERE metric = 'unsubscribed'),
                   sum(count) FILTER (WHERE metric = 'complained')
            FROM metrics.funnel_daily WHERE journey_id <> '' AND variant <> ''
            GROUP BY journey_id, variant
            """
        )
        guard = {(j, v): (int(s or 0), int(u or 0), int(c or 0)) for j, v, s, u, c in guardrails}
        arms: dict[tuple[str, int, str], list[Arm]] = {}
        for journey, version, step, variant, exposed, converted in counts:
            sent, unsub, complained = (
                (0, 0, 0) if step == HOLDOUT_STEP else guard.get((journey, variant), (0, 0, 0))
            )
            arms.setdefault((journey, version, step), []).append(
                Arm(variant, int(exposed), int(converted), sent, unsub, complained)
            )
        messages: list[Message] = []
        for journey, version, step, control, min_p_text, decision_id in experiments:
            experiment_arms = arms.get((journey, version, step), [])
            if not experiment_arms:
                continue
            names = [a.variant for a in experiment_arms]
            chosen = control if control in names else default_control(step, names)
            previous = orjson.loads(min_p_text)
            decision = decide(
                experiment_arms, control=chosen, policy=policy, previous_p_values=previous
            )
            minima = {
                r.variant: r.sequential_p_value
                for r in decision.arms
                if r.sequential_p_value is not None
            }
            new_decision_id = decision_id
            # every split's first winner goes out; the journey acts on it where the split
            # says ``promote_winner`` (its definition), and ignores it elsewhere
            winner = decision.verdict is Verdict.WINNER and step != HOLDOUT_STEP
            if winner and decision_id is None:
                message = decision_message(journey, version, step, decision, now)
                messages.append(message)
                new_decision_id = _decision_id(journey, version, step, decision)
                DECISIONS.labels(decision.verdict.value).inc()
            await driver.execute(
                """
                UPDATE metrics.experiments SET verdict = $4, winner = $5, p_value = $6,
                    min_p_values = $7::jsonb, result = $8::jsonb, evaluated_at = $9,
                    decision_id = $10,
                    decided_at = CASE WHEN decision_id IS NULL AND $10::text IS NOT NULL
                                      THEN $9 ELSE decided_at END
                WHERE journey_id = $1 AND journey_version = $2 AND step_id = $3
                """,
                journey,
                version,
                step,
                decision.verdict.value,
                decision.winner,
                decision.p_value,
                orjson.dumps(minima).decode(),
                orjson.dumps(_result(decision)).decode(),
                now,
                new_decision_id,
            )
            for result in decision.arms:
                EXPERIMENT_RATE.labels(journey, step, result.variant).set(result.rate)
            EXPERIMENT_P_VALUE.labels(journey, step).set(decision.p_value)
        await enqueue(session=conn, outbox=outbox, messages=messages)
        return len(messages)


def _decision_id(journey: str, version: int, step: str, decision: Decision) -> str:
    return f"{journey}:{version}:{step}:{decision.winner}"


def _result(decision: Decision) -> dict[str, Any]:
    return {
        "verdict": decision.verdict.value,
        "winner": decision.winner,
        "control": decision.control,
        "p_value": decision.p_value,
        "reason": decision.reason,
        "arms": [asdict(arm) for arm in decision.arms],
    }


def decision_message(
    journey: str, version: int, step: str, decision: Decision, now: datetime
) -> Message:
    payload = ExperimentDecision(
        decision_id=_decision_id(journey, version, step, decision),
        journey_id=journey,
        journey_version=version,
        step_id=step,
        verdict=DecisionVerdict(decision.verdict.value),
        winner=decision.winner,
        p_value=min(1.0, max(0.0, decision.p_value)),
        variants=[VariantResult.model_validate(a, from_attributes=True) for a in decision.arms],
        decided_at=now,
    )
    return EXPERIMENT_DECISIONS.message(payload)


def plan_experiment(
    result: dict[str, Any] | None,
    *,
    mde: float,
    policy: Policy,
    baseline: float | None = None,
) -> dict[str, Any]:
    """The plan of an experiment for a relative ``mde``: its control's rate so far (or
    ``baseline``) is the base, its smallest arm's exposures the users so far, the level
    the evaluator's (``alpha`` over the comparisons with control). Raises ValueError when
    there is no rate to plan from (no conversions in control yet and no ``baseline``)."""
    arms = (result or {}).get("arms") or []
    control = (result or {}).get("control")
    base = next((a for a in arms if a.get("variant") == control), None)
    rate = baseline
    if rate is None and base is not None and base.get("exposed"):
        rate = base["converted"] / base["exposed"]
    if rate is None or not 0 < rate < 1:
        raise ValueError(
            "no baseline rate to plan from (control has no conversions yet): pass baseline"
        )
    comparisons = max(1, len(arms) - 1)
    exposed = min((int(a.get("exposed") or 0) for a in arms), default=0)
    found = plan(rate, mde, exposed_per_arm=exposed, alpha=policy.alpha / comparisons)
    answer = asdict(found)
    # the tau the evaluator's verdicts use: from its own MDE when it has one
    answer["evaluator_tau"] = tau_for_effect(policy.mde * rate) if policy.mde else policy.tau
    return answer
