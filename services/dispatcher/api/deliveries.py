"""A customer's deliveries and their outcomes; test sends through every check."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import ValidationError

from services.dispatcher import admin_ops as ops
from services.dispatcher.api.deps import RuntimeDep
from services.dispatcher.schemas import DeliveryPublic, TestSendCreate
from shared.events.dispatch_requests import DispatchRequest
from shared.http.admin import ADMIN
from shared.http.problems import Invalid, problems

router = APIRouter(prefix="/v1", tags=["deliveries"], dependencies=ADMIN)


@router.get("/customers/{customer_id:path}/deliveries", response_model=list[DeliveryPublic])
async def customer_deliveries(
    customer_id: str,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
    after: Annotated[
        str | None, Query(max_length=256, description="the last dispatch id seen: older ones")
    ] = None,
) -> list[DeliveryPublic]:
    """The customer's latest deliveries, newest first, each with its outcomes (a page
    of ``limit``; ``after`` the last one's dispatch id for the next, older page)."""
    return await ops.customer_deliveries(
        runtime.engine, customer_id=customer_id, limit=limit, after=after
    )


@router.post("/test-sends", status_code=201, response_model=DeliveryPublic, responses=problems(422))
async def test_send(body: TestSendCreate, runtime: RuntimeDep) -> DeliveryPublic:
    """Send a template to a customer now, through every check, and answer with the
    delivery and its outcomes."""
    try:
        dispatch = DispatchRequest(
            dispatch_id=f"test-{uuid.uuid4()}",
            customer_id=body.customer_id,
            channels=body.channels,
            template_id=body.template_id,
            template_version=body.template_version,
            priority=body.priority,
            context=body.context,
            requested_at=runtime.clock(),
        )
    except ValidationError as exc:  # what the topic's schema refuses, as a 422
        errors = [
            {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        first = errors[0]
        raise Invalid(
            f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}", errors=errors
        ) from None
    await runtime.dispatcher.handle_requests([dispatch])
    found = await ops.customer_deliveries(runtime.engine, customer_id=body.customer_id, limit=1_000)
    for delivery in found:
        if delivery.dispatch_id == dispatch.dispatch_id:
            return delivery
    raise RuntimeError("the test send was not recorded")  # pragma: no cover
