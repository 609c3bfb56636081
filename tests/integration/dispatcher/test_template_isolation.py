"""Issue 21: a hostile template neither stalls the dispatcher nor runs past its limit."""

from __future__ import annotations

import asyncio
import time
import uuid

from tests.integration.dispatcher.conftest import Stack

#: three nested loops of 10,000 and no output: hours of work without a budget
HOSTILE = (
    "{% for a in range(10000) %}{% for b in range(10000) %}{% for c in range(10000) %}"
    "{% endfor %}{% endfor %}{% endfor %}"
)


async def test_the_dispatcher_answers_while_a_hostile_template_renders(stack: Stack) -> None:
    await stack.template(
        "hostile", name="Hostile", variants=[{"channel": "email", "subject": "s", "text": HOSTILE}]
    )
    customer = f"hostile-{uuid.uuid4().hex[:6]}"
    await stack.profile(customer, traits={"email": f"{customer}@example.com"})
    await stack.contact_known(customer)
    request = await stack.request(customer_id=customer, template_id="hostile", priority="critical")
    final = asyncio.create_task(stack.final(request.dispatch_id))
    slowest = 0.0
    answered = 0
    while not final.done():
        # from when the request is due (the end of the last pause) to its answer: a
        # render on the event loop shows here as a late answer, whenever it started
        started = time.monotonic()
        await asyncio.sleep(0.02)
        answer = await stack.client.get("/healthz")
        slowest = max(slowest, time.monotonic() - started - 0.02)
        assert answer.status_code == 200
        answered += 1
    outcome = final.result()
    assert outcome["status"] == "failed"
    assert outcome["reason"].startswith(
        (
            "template_error: text: rendering took longer than 0.5s",
            "template_error: text: the template does more than 2,000,000 operations",
        )
    ), outcome["reason"]
    assert answered >= 10  # it polled while the template rendered
    assert slowest < 0.1, slowest
