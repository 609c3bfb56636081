"""``/v1/customers/{customer_id}/preferences``: a customer's choices."""

from __future__ import annotations

from fastapi import APIRouter

from services.dispatcher import admin_ops as ops
from services.dispatcher.api.deps import RuntimeDep
from services.dispatcher.schemas import PreferencesPublic, PreferencesUpdate
from shared.http.admin import ADMIN
from shared.http.problems import problems

router = APIRouter(prefix="/v1/customers", tags=["preferences"], dependencies=ADMIN)


@router.get("/{customer_id:path}/preferences", response_model=PreferencesPublic)
async def get_preferences(customer_id: str, runtime: RuntimeDep) -> PreferencesPublic:
    return await ops.get_preferences(runtime.engine, customer_id=customer_id)


@router.patch(
    "/{customer_id:path}/preferences", response_model=PreferencesPublic, responses=problems(422)
)
async def update_preferences(
    customer_id: str, body: PreferencesUpdate, runtime: RuntimeDep
) -> PreferencesPublic:
    """Merge: channels and topics named are set, the others kept."""
    await ops.update_preferences(
        runtime.engine,
        customer_id=customer_id,
        now=runtime.clock(),
        unsubscribed=body.unsubscribed,
        channels={c.value: v for c, v in body.channels.items()} or None,
        topics=body.topics or None,
    )
    return await ops.get_preferences(runtime.engine, customer_id=customer_id)
