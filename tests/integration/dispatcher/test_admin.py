"""The admin API: templates (versioned) and preview, topics, preferences, policy,
deliveries with outcomes, test sends, bounce and complaint reports."""

from __future__ import annotations

import uuid

from tests.integration.dispatcher.conftest import ADMIN, Stack

WELCOME = {
    "name": "Welcome",
    "subscription_topic": "news",
    "variants": [
        {
            "channel": "email",
            "subject": "Welcome {{ customer.traits.first_name | default('friend') }}",
            "text": "LTV {{ customer.predicted_ltv }} tier {{ customer.rfm_tier }}",
        },
        {"channel": "email", "locale": "fr", "subject": "Bienvenue", "text": "Salut"},
    ],
}


async def test_admin_needs_a_token(stack: Stack) -> None:
    assert (await stack.client.get("/v1/templates")).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await stack.client.get("/v1/policy", headers=wrong)).status_code == 401


async def test_templates_are_versioned_and_previewed_for_a_customer(stack: Stack) -> None:
    template_id = f"welcome-{uuid.uuid4().hex[:6]}"
    created = await stack.client.post(
        "/v1/templates", json={"id": template_id, "definition": WELCOME}, headers=ADMIN
    )
    assert created.status_code == 201 and created.json()["version"] == 1
    again = await stack.client.post(
        "/v1/templates", json={"id": template_id, "definition": WELCOME}, headers=ADMIN
    )
    assert again.status_code == 409
    changed = {**WELCOME, "name": "Welcome v2"}
    updated = await stack.client.put(f"/v1/templates/{template_id}", json=changed, headers=ADMIN)
    assert updated.json()["version"] == 2
    first = await stack.client.get(f"/v1/templates/{template_id}?version=1", headers=ADMIN)
    assert first.json()["definition"]["name"] == "Welcome"

    broken = {**WELCOME, "variants": [{"channel": "email", "subject": "{{ oops", "text": "x"}]}
    refused = await stack.client.put(f"/v1/templates/{template_id}", json=broken, headers=ADMIN)
    assert refused.status_code == 422
    problem = refused.json()
    assert refused.headers["content-type"] == "application/problem+json"
    assert "does not compile" in problem["detail"]
    assert problem["errors"][0]["loc"] == ["body", "definition"]
    assert "does not compile" in problem["errors"][0]["msg"]

    await stack.profile(
        "pierre",
        email="pierre@example.com",
        locale="fr-FR",
        computed={"predictedLtv": 310.5, "rfmTier": "champions"},
    )
    await stack.profile("ann", email="ann@example.com", computed={"predictedLtv": 12.0})
    await stack.contact_known("pierre")
    await stack.contact_known("ann")
    preview = await stack.client.post(
        f"/v1/templates/{template_id}/preview", json={"customer_id": "pierre"}, headers=ADMIN
    )
    assert preview.status_code == 200
    assert preview.json()["subject"] == "Bienvenue"
    preview = await stack.client.post(
        f"/v1/templates/{template_id}/preview", json={"customer_id": "ann"}, headers=ADMIN
    )
    body = preview.json()
    assert (body["subject"], body["text"]) == ("Welcome friend", "LTV 12.0 tier None")
    missing = await stack.client.post(
        f"/v1/templates/{template_id}/preview", json={"customer_id": "nobody"}, headers=ADMIN
    )
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no profile 'nobody' in the projection"
    assert missing.json()["type"] == "urn:tenure:problem:not_found"

    # a template that cannot render for this customer: a clear 422 in preview...
    strict = {
        "name": "strict",
        "variants": [{"channel": "email", "subject": "{{ customer.traits.plan }}", "text": "x"}],
    }
    await stack.template("strict", **strict)
    answer = await stack.client.post(
        "/v1/templates/strict/preview", json={"customer_id": "ann"}, headers=ADMIN
    )
    assert answer.status_code == 422 and "plan" in answer.json()["errors"][0]["msg"]
    # ...and a failed outcome for that one message, the consumer going on
    request = await stack.request(customer_id="ann", template_id="strict", priority="critical")
    outcome = await stack.final(request.dispatch_id)
    assert outcome["status"] == "failed"
    assert outcome["reason"].startswith("template_error: subject:")

    # an injection attempt is contained in the same way
    evil = {
        "name": "evil",
        "variants": [
            {
                "channel": "email",
                "subject": "x",
                "text": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            }
        ],
    }
    await stack.template("evil", **evil)
    request = await stack.request(customer_id="ann", template_id="evil", priority="critical")
    outcome = await stack.final(request.dispatch_id)
    assert outcome["status"] == "failed" and "not allowed" in outcome["reason"]


async def test_topics_policy_deliveries_test_sends_and_feedback(stack: Stack) -> None:
    topic = await stack.client.put(
        "/v1/topics/news",
        json={"name": "News", "default_subscribed": False},
        headers=ADMIN,
    )
    assert topic.status_code == 200
    assert [t["topic"] for t in (await stack.client.get("/v1/topics", headers=ADMIN)).json()] == [
        "news"
    ]
    policy = (await stack.client.get("/v1/policy", headers=ADMIN)).json()
    policy["quiet_hours"] = {"enabled": False, "start": "21:00:00", "end": "09:00:00"}
    saved = await stack.client.put("/v1/policy", json=policy, headers=ADMIN)
    assert saved.status_code == 200
    bad = await stack.client.put(
        "/v1/policy", json={**policy, "default_timezone": "Mars/Olympus"}, headers=ADMIN
    )
    assert bad.status_code == 422

    await stack.template("welcome2", **WELCOME)
    await stack.profile("zoe", email="zoe@example.com")
    await stack.contact_known("zoe")
    # the topic is opt-in and zoe never opted in
    sent = await stack.client.post(
        "/v1/test-sends", json={"customer_id": "zoe", "template_id": "welcome2"}, headers=ADMIN
    )
    assert sent.status_code == 201
    assert (sent.json()["status"], sent.json()["reason"]) == ("suppressed", "unsubscribed")
    await stack.client.patch(
        "/v1/customers/zoe/preferences", json={"topics": {"news": True}}, headers=ADMIN
    )
    sent = await stack.client.post(
        "/v1/test-sends", json={"customer_id": "zoe", "template_id": "welcome2"}, headers=ADMIN
    )
    delivery = sent.json()
    assert delivery["status"] == "sent"
    assert [o["status"] for o in delivery["outcomes"]] == ["sent"]

    # a hard bounce: outcome, event, and the email channel turned off
    bounce = await stack.client.post(
        "/v1/feedback/email",
        json={"message_id": f"<{delivery['dispatch_id']}@tenure.local>", "kind": "bounce"},
        headers=ADMIN,
    )
    assert bounce.status_code == 202
    await stack.event("Email Bounced", delivery["dispatch_id"])
    deliveries = (await stack.client.get("/v1/customers/zoe/deliveries", headers=ADMIN)).json()
    latest = next(d for d in deliveries if d["dispatch_id"] == delivery["dispatch_id"])
    assert [o["status"] for o in latest["outcomes"]] == ["sent", "bounced"]
    prefs = (await stack.client.get("/v1/customers/zoe/preferences", headers=ADMIN)).json()
    assert prefs["channels"] == {"email": False}
    unknown = await stack.client.post(
        "/v1/feedback/email", json={"dispatch_id": "nope", "kind": "complaint"}, headers=ADMIN
    )
    assert unknown.status_code == 404


async def test_a_nul_character_in_a_body_is_a_422_not_a_500(stack: Stack) -> None:
    """Schemathesis found NUL characters (which PostgreSQL cannot store, in text nor
    jsonb) failing these operations in asyncpg with a 500."""
    refused = [
        ("PUT", "/v1/topics/nul", {"name": "N\x00ws"}, "name"),
        ("PATCH", "/v1/customers/ann/preferences", {"topics": {"n\x00": True}}, "topics"),
        ("POST", "/v1/test-sends", {"customer_id": "a\x00", "template_id": "t"}, "customer_id"),
        (
            "POST",
            "/v1/test-sends",
            {"customer_id": "ann", "template_id": "t", "context": {"k": ["\x00"]}},
            "context.k.0",
        ),
        (
            "POST",
            "/v1/feedback/email",
            {"dispatch_id": "d\x00", "kind": "complaint"},
            "dispatch_id",
        ),
    ]
    for method, path, body, where in refused:
        answer = await stack.client.request(method, path, json=body, headers=ADMIN)
        assert answer.status_code == 422, (path, answer.text)
        [error] = answer.json()["errors"]
        assert f"`{where}` contains a NUL character" in error["msg"], error
    topics = (await stack.client.get("/v1/topics", headers=ADMIN)).json()
    assert "nul" not in [t["topic"] for t in topics]


async def test_a_test_send_the_request_topic_refuses_is_a_422_not_a_500(stack: Stack) -> None:
    """Schemathesis found a test send with more channels than exist, or one channel
    twice, failing as a ``dispatch.requests`` event with a 500."""
    for channels in (["email", "push", "email", "sms", "push", "email"], ["email", "email"]):
        answer = await stack.client.post(
            "/v1/test-sends",
            json={"customer_id": "ann", "template_id": "t", "channels": channels},
            headers=ADMIN,
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["loc"][0] == "body"
    huge = {"customer_id": "ann", "template_id": "t", "template_version": 2**40}
    answer = await stack.client.post("/v1/test-sends", json=huge, headers=ADMIN)
    assert answer.status_code == 422, answer.text
    answer = await stack.client.get(f"/v1/templates/t?version={2**40}", headers=ADMIN)
    assert answer.status_code == 422, answer.text


async def test_feedback_without_an_id_and_the_policy_answer_as_documented(stack: Stack) -> None:
    answer = await stack.client.post("/v1/feedback/email", json={"kind": "bounce"}, headers=ADMIN)
    assert answer.status_code == 422
    problem = answer.json()
    assert isinstance(problem["detail"], str) and "message_id" in problem["detail"]
    [error] = problem["errors"]
    assert error["loc"] == ["body", "dispatch_id"] and "message_id" in error["msg"]
    policy = (await stack.client.get("/v1/policy", headers=ADMIN)).json()
    policy["quiet_hours"] = {"enabled": True, "start": "22:30", "end": "07:00"}
    saved = await stack.client.put("/v1/policy", json=policy, headers=ADMIN)
    assert saved.status_code == 200, saved.text
    assert saved.json()["quiet_hours"] == {"enabled": True, "start": "22:30:00", "end": "07:00:00"}
    policy["quiet_hours"]["start"] = "22:30:00Z"  # a local time has no offset
    assert (await stack.client.put("/v1/policy", json=policy, headers=ADMIN)).status_code == 422
