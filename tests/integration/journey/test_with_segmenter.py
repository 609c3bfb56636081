"""The inactivity win-back from the segmenter's real messages: the segmenter's sweep
notices 30 quiet days and publishes the segment entry, and its ``profiles`` feed the
journey's projection that the branch reads."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from services.segmenter.app import create_app as create_segmenter
from services.segmenter.settings import SegmenterGroup, SegmenterSettings
from shared.auth import hash_token
from shared.db.migrations import upgrade
from shared.events import ALL_TOPICS
from shared.events.customer_events import CustomerEvent, EventType
from shared.kafka.topics import ensure_topics, with_dead_letters
from shared.settings import DatabaseSettings
from tenure.embedded import EmbeddedBroker
from tenure.services import SERVICES
from tests.conftest import NewDatabase
from tests.integration.journey.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    Stack,
    module_kafka,
)
from tests.support.clock import FakeClock


@pytest.fixture
async def segmenter(
    module_broker: EmbeddedBroker, new_database: NewDatabase, stack: Stack
) -> AsyncIterator[httpx.AsyncClient]:
    """A segmenter on the journey stack's broker and clock."""
    import asyncio

    kafka = module_kafka(module_broker)
    await ensure_topics(kafka, with_dead_letters(ALL_TOPICS))
    url = await new_database()
    await asyncio.to_thread(
        upgrade, script_location=SERVICES["segmenter"].migrations_dir, database_url=url
    )
    settings = SegmenterSettings(
        kafka=kafka,
        database=DatabaseSettings(url=url),
        segmenter=SegmenterGroup(
            admin_token_hashes=hash_token(ADMIN_TOKEN),
            consumer_group=f"segmenter-{uuid.uuid4().hex[:8]}",
            sweep_interval_s=0.1,
            refit_interval_s=0,
        ),
    )
    app = create_segmenter(settings, clock=stack.clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://segmenter") as client:
            await app.state.runtime.runner.started.wait()
            yield client


async def test_inactivity_win_back_from_the_segmenters_segment_change(
    stack: Stack, segmenter: httpx.AsyncClient
) -> None:
    assert isinstance(stack.clock, FakeClock)
    segment = f"inactive-30d-{uuid.uuid4().hex[:6]}"
    created = await segmenter.post(
        "/v1/segments?wait=true",
        json={
            "id": segment,
            "name": segment,
            "rule": {"kind": "last_event", "older_than_days": 30},
        },
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    await stack.journey(
        {
            "triggers": [{"kind": "segment", "segment_id": segment}],
            "steps": [
                {
                    "id": "plan",
                    "type": "branch",
                    "cases": [
                        {
                            "when": {"kind": "trait", "trait": "plan", "op": "eq", "value": "pro"},
                            "next": "pro",
                        }
                    ],
                    "otherwise": "basic",
                },
                *[
                    {
                        "id": step,
                        "type": "send",
                        "channels": ["email"],
                        "template_id": f"win-back-{step}",
                        "next": "done",
                    }
                    for step in ("pro", "basic")
                ],
                {"id": "done", "type": "exit"},
            ],
        }
    )
    pro, basic = f"c-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:8]}"
    now = stack.clock.now
    await stack.send(
        "customer.events",
        *(
            CustomerEvent(
                type=EventType.IDENTIFY,
                message_id=f"m-{uuid.uuid4().hex}",
                user_id=who,
                traits={"plan": plan},
                timestamp=now,
                received_at=now,
            )
            for who, plan in ((pro, "pro"), (basic, "basic"))
        ),
    )
    # both profiles reached the journey's projection before time passes
    for who in (pro, basic):
        await _profile_projected(stack, who)
    stack.clock.advance(days=31)
    (to_pro,) = await stack.dispatches(pro, 1, within_s=20)
    (to_basic,) = await stack.dispatches(basic, 1, within_s=20)
    assert to_pro["templateId"] == "win-back-pro"
    assert to_basic["templateId"] == "win-back-basic"
    assert to_pro["context"]["segmentId"] == segment


async def _profile_projected(stack: Stack, customer_id: str) -> None:
    import asyncio

    from services.journey.models import profiles
    from shared.db.profile_projection import load_profiles

    for _ in range(200):
        async with stack.runtime.engine.connect() as conn:
            if customer_id in await load_profiles(conn, table=profiles, ids=[customer_id]):
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the profile of {customer_id} never reached the journey")
