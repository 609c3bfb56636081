"""Offer redemptions tied back to the message that issued the code: ``Coupon Issued``
maps code to dispatch; ``Coupon Applied`` or a purchase with ``coupon`` counts
``redeemed`` once per message and converts that message (not the last touch)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.events import customer_events, dispatch_outcomes, dispatch_requests
from shared.events import engagement as eng
from shared.events.customer_events import CustomerEvent
from shared.events.dispatch_outcomes import Status
from tests.integration.metrics.conftest import Stack
from tests.integration.metrics.test_messaging import T0, _outcome, _request, _track

JOURNEY = "coupon-j"


def issued(dispatch: str, customer: str, code: str, variant: str, step: str) -> CustomerEvent:
    return _track(
        f"issued-{dispatch}",
        customer,
        eng.COUPON_ISSUED,
        T0,
        **{
            eng.COUPON: code,
            eng.COUPON_KIND: "pool",
            eng.DISPATCH_ID: dispatch,
            eng.JOURNEY_ID: JOURNEY,
            eng.STEP_ID: step,
            eng.VARIANT: variant,
            eng.CHANNEL: "email",
        },
    )


async def test_redemptions_convert_the_message_that_issued_the_code(stack: Stack) -> None:
    sends = [("dc-1", "cc-1", "a", "offer"), ("dc-2", "cc-2", "b", "offer")]
    later = ("dc-1b", "cc-1", "a", "later")  # a later message to cc-1, without a code
    await stack.send(
        dispatch_requests.TOPIC,
        *[_request(d, c, JOURNEY, step, v) for d, c, v, step in [*sends, later]],
    )
    outcomes = [
        _outcome(d, c, Status.SENT, T0, journey=JOURNEY, variant=v).model_copy(
            update={"step_id": step}
        )
        for d, c, v, step in sends
    ]
    late = _outcome(
        "dc-1b", "cc-1", Status.SENT, T0 + timedelta(hours=1), journey=JOURNEY, variant="a"
    )
    outcomes.append(late.model_copy(update={"step_id": "later"}))
    await stack.send(dispatch_outcomes.TOPIC, *outcomes)
    await stack.send(
        customer_events.TOPIC,
        issued("dc-1", "cc-1", "SPR-1", "a", "offer"),
        issued("dc-2", "cc-2", "BACK-XYZ", "b", "offer"),
    )
    redemptions = [
        # cc-1 buys with the code after the later message: the code's message converts
        _track(
            "buy-cc1",
            "cc-1",
            "Order Completed",
            T0 + timedelta(hours=2),
            revenue=40,
            coupon="SPR-1",
        ),
        _track("apply-cc1", "cc-1", eng.COUPON_APPLIED, T0 + timedelta(hours=3), coupon="SPR-1"),
        _track("apply-cc2", "cc-2", eng.COUPON_APPLIED, T0 + timedelta(hours=1), coupon="BACK-XYZ"),
        _track(
            "apply-unknown", "cc-2", eng.COUPON_APPLIED, T0 + timedelta(hours=1), coupon="NOT-OURS"
        ),
    ]
    await stack.send(customer_events.TOPIC, *redemptions)
    await stack.send(customer_events.TOPIC, *redemptions)  # redelivered

    def complete(body: dict[str, Any]) -> bool:
        return sum(int(r.get("redeemed", 0)) for r in body["rows"]) >= 2

    body = await stack.until(
        "/v1/kpis/funnel",
        complete,
        journey_id=JOURNEY,
        group_by="step_id,variant",
        **{"from": "2026-11-19", "to": "2026-11-25"},
    )
    rows = {(r["step_id"], r["variant"]): r for r in body["rows"]}
    assert (rows[("offer", "a")]["redeemed"], rows[("offer", "a")]["converted"]) == (1, 1)
    assert (rows[("offer", "b")]["redeemed"], rows[("offer", "b")]["converted"]) == (1, 1)
    assert rows[("later", "a")]["converted"] == 0  # not the last touch: the code decides
    assert rows[("offer", "a")]["rates"]["redemption_rate"] == 1.0
