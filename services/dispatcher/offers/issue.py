"""Offers in the decision transaction: draw the pool codes of the messages being sent
(before they are rendered, keyed by dispatch), and announce every code a rendering
issued as a ``Coupon Issued`` event on ``customer.events`` (through the outbox, in the
same transaction: a code is announced exactly when its message is handed over).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.dispatcher import metrics
from services.dispatcher.messages import attribution, engagement_event
from services.dispatcher.offers import pools
from services.dispatcher.offers.template import OfferFunctions
from services.dispatcher.policy import Decision
from shared.events import engagement
from shared.events.dispatch_requests import DispatchRequest
from shared.kafka.producer import Message


async def draw_for(
    conn: AsyncConnection, wanted: Sequence[tuple[str, str, str]], *, now: datetime
) -> dict[tuple[str, str], str]:
    """``(pool, dispatch_id) → code`` for ``(pool, dispatch_id, customer_id)`` wanted:
    the sends whose variant calls ``coupon()``."""
    if not wanted:
        return {}
    drawn = await pools.draw(conn, wanted=list(wanted), now=now)
    for stats in await pools.pool_stats(conn, pool_ids=sorted({w[0] for w in wanted})):
        metrics.COUPONS_AVAILABLE.labels(stats.pool_id).set(stats.available)
        metrics.COUPON_LOW_WATER.labels(stats.pool_id).set(stats.low_water)
    metrics.COUPONS_ISSUED.inc(len(drawn))
    return drawn


def coupon_issued_messages(
    request: DispatchRequest, decision: Decision, offers: OfferFunctions, now: datetime
) -> list[Message]:
    channel = decision.channel.value if decision.channel else None
    base = attribution(request, channel, request.template_id)
    out = []
    for code, issued in sorted(offers.issued.items()):
        properties: dict[str, Any] = {
            **base,
            engagement.COUPON: code,
            engagement.COUPON_KIND: issued.kind,
        }
        if issued.pool is not None:
            properties[engagement.COUPON_POOL] = issued.pool
        if issued.expires_on is not None:
            properties[engagement.COUPON_EXPIRES_AT] = issued.expires_on.isoformat()
        out.append(
            engagement_event(
                customer_id=request.customer_id,
                event=engagement.COUPON_ISSUED,
                properties=properties,
                at=now,
                # one event per dispatch and code, whoever renders it again
                message_id=f"coupon-issued-{request.dispatch_id}-{code}",
            )
        )
    return out
