"""Issue 21: the template preview renders in a worker thread, as the dispatching does —
the dispatcher answers `/healthz` within 100 ms while a hostile template previews."""

from __future__ import annotations

import asyncio
import time

from tests.integration.dispatcher.conftest import ADMIN, Stack

HOSTILE = "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}"


async def test_the_dispatcher_answers_while_a_hostile_template_previews(stack: Stack) -> None:
    await stack.template(
        "hostile-preview",
        name="hostile",
        variants=[{"channel": "email", "subject": "s", "text": HOSTILE}],
    )
    await stack.profile("loop-victim", email="victim@example.com")
    await stack.contact_known("loop-victim")
    preview = asyncio.create_task(
        stack.client.post(
            "/v1/templates/hostile-preview/preview",
            json={"customer_id": "loop-victim"},
            headers=ADMIN,
        )
    )
    await asyncio.sleep(0.05)
    answered = 0
    while not preview.done():
        started = time.monotonic()
        response = await stack.client.get("/healthz")
        assert response.status_code == 200
        assert time.monotonic() - started < 0.1
        answered += 1
        await asyncio.sleep(0.02)
    assert answered >= 5  # it answered while the template rendered
    refused = await preview
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["type"] == "template_error"
