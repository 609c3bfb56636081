"""Push and social messages reach a loopback endpoint with the providers' documented
payloads; fallback between channels; retries then success; permanent failures end in
a failed outcome and a dead letter; SSRF attempts are refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid
from typing import Any

import http_ece
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.dispatcher.conftest import Stack, b64

EVERYWHERE = {
    "name": "Everywhere",
    "variants": [
        {"channel": "email", "subject": "Hi", "text": "Hi {{ customer.id }}"},
        {
            "channel": "push",
            "title": "Hi {{ customer.traits.first_name | default('there') }}",
            "text": "Your cart: {{ context.items | length }} items",
            "url": "https://shop.example/cart",
        },
        {
            "channel": "whatsapp",
            "whatsapp_template": "cart_reminder",
            "whatsapp_language": "en_US",
            "whatsapp_parameters": ["{{ customer.traits.first_name }}", "{{ context.items[0] }}"],
        },
        {"channel": "messenger", "text": "Hi {{ customer.traits.first_name }}"},
        {
            "channel": "webhook",
            "text": "Hi {{ customer.id }}",
            "data": {"plan": "{{ customer.traits.plan }}"},
        },
    ],
}


async def _customer(stack: Stack, name: str, **fields: Any) -> str:
    customer = f"{name}-{uuid.uuid4().hex[:6]}"
    await stack.profile(customer, **fields)
    await stack.contact_known(customer)
    return customer


async def test_fallback_to_push_over_fcm_with_a_cached_oauth_token(stack: Stack) -> None:
    await stack.template("everywhere", **EVERYWHERE)
    customer = await _customer(
        stack, "fcm", traits={"first_name": "Grace", "fcmToken": "device-token-1"}
    )
    tokens_before = len(stack.recorder.matching("/token"))
    first = await stack.request(
        customer_id=customer,
        channels=["email", "push"],
        template_id="everywhere",
        priority="critical",
        context={"items": ["a", "b"]},
    )
    second = await stack.request(
        customer_id=customer,
        channels=["email", "push"],
        template_id="everywhere",
        priority="critical",
        context={"items": ["a"]},
    )
    for request in (first, second):
        outcome = await stack.final(request.dispatch_id)
        assert outcome.get("channel") == "push", outcome.get("reason")
        assert outcome["status"] == "sent"
        assert outcome["providerMessageId"].startswith("projects/tenure-test/messages/")
    sends = [
        r
        for r in stack.recorder.matching("/v1/projects/tenure-test/messages:send")
        if r.json()["message"]["token"] == "device-token-1"
    ]
    assert len(sends) == 2
    message = sends[0].json()["message"]
    assert message["notification"] == {"title": "Hi Grace", "body": "Your cart: 2 items"}
    assert message["data"]["dispatchId"] == first.dispatch_id
    assert message["data"]["url"] == "https://shop.example/cart"
    assert message["data"]["openedUrl"].startswith("http://dispatcher.test/t/push-opened/")
    assert sends[0].headers["authorization"].startswith("Bearer token-")
    # the OAuth2 token was fetched once and reused (cached until it expires)
    token_calls = stack.recorder.matching("/token")[tokens_before:]
    assert len(token_calls) <= 1
    if token_calls:
        form = dict(p.split("=", 1) for p in token_calls[0].body.decode().split("&"))
        assert form["grant_type"] == "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
        claims = orjson.loads(base64.urlsafe_b64decode(form["assertion"].split(".")[1] + "=="))
        assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
        assert claims["iss"] == stack.keys.service_account["client_email"]

    # the push-opened callback → Push Opened
    opened = message["data"]["openedUrl"].removeprefix("http://dispatcher.test")
    assert (await stack.client.post(opened)).status_code == 204
    event = await stack.event("Push Opened", first.dispatch_id)
    assert event["properties"]["channel"] == "push"


async def test_web_push_is_encrypted_for_the_subscription_and_signed_with_vapid(
    stack: Stack,
) -> None:
    receiver = ec.generate_private_key(ec.SECP256R1())
    public = receiver.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    auth = os.urandom(16)
    endpoint = f"{stack.recorder.url}/push/{uuid.uuid4().hex}"
    customer = await _customer(
        stack,
        "webpush",
        traits={
            "webPushSubscription": {
                "endpoint": endpoint,
                "keys": {"p256dh": b64(public), "auth": b64(auth)},
            }
        },
    )
    request = await stack.request(
        customer_id=customer,
        channels=["push"],
        template_id="everywhere",
        priority="critical",
        context={"items": []},
    )
    assert (await stack.final(request.dispatch_id))["status"] == "sent"
    (call,) = stack.recorder.matching(endpoint.removeprefix(stack.recorder.url))
    assert call.headers["content-encoding"] == "aes128gcm"
    assert call.headers["authorization"].startswith("vapid t=")
    assert int(call.headers["ttl"]) > 0
    clear = http_ece.decrypt(call.body, private_key=receiver, auth_secret=auth, version="aes128gcm")
    payload = orjson.loads(clear)
    assert payload["title"] == "Hi there"
    assert payload["dispatchId"] == request.dispatch_id


async def test_whatsapp_template_and_messenger_payloads(stack: Stack) -> None:
    customer = await _customer(
        stack,
        "social",
        phone="+33 6 12 34 56 78",
        traits={"first_name": "Ada", "messengerPsid": "psid-42"},
    )
    wa = await stack.request(
        customer_id=customer,
        channels=["whatsapp"],
        template_id="everywhere",
        priority="critical",
        context={"items": ["Trail shoes"]},
    )
    outcome = await stack.final(wa.dispatch_id)
    assert outcome["status"] == "sent" and outcome["providerMessageId"].startswith("wamid.")
    call = next(
        r
        for r in stack.recorder.matching("/v21.0/1234567890/messages")
        if r.json()["to"] == "33612345678"
    )
    assert call.headers["authorization"] == "Bearer wa-token"
    assert call.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "33612345678",
        "type": "template",
        "template": {
            "name": "cart_reminder",
            "language": {"code": "en_US"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Ada"},
                        {"type": "text", "text": "Trail shoes"},
                    ],
                }
            ],
        },
    }
    fb = await stack.request(
        customer_id=customer,
        channels=["messenger"],
        template_id="everywhere",
        priority="critical",
    )
    outcome = await stack.final(fb.dispatch_id)
    assert outcome["status"] == "sent" and outcome["providerMessageId"].startswith("m_")
    call = next(
        r
        for r in stack.recorder.matching("/v21.0/me/messages")
        if r.json()["recipient"]["id"] == "psid-42"
    )
    assert call.query == "access_token=page-token"
    assert call.json() == {
        "recipient": {"id": "psid-42"},
        "messaging_type": "MESSAGE_TAG",
        "tag": "ACCOUNT_UPDATE",
        "message": {"text": "Hi Ada"},
    }


async def test_webhook_is_signed_and_ssrf_targets_are_refused(stack: Stack) -> None:
    port = stack.recorder.port
    hook = f"/hook/{uuid.uuid4().hex}"
    customer = await _customer(
        stack, "hook", traits={"webhookUrl": f"http://localhost:{port}{hook}", "plan": "pro"}
    )
    request = await stack.request(
        customer_id=customer,
        channels=["webhook"],
        template_id="everywhere",
        priority="critical",
        journey_id="j-1",
    )
    assert (await stack.final(request.dispatch_id))["status"] == "sent"
    (call,) = stack.recorder.matching(hook)
    assert call.headers["host"] == f"localhost:{port}"
    body = call.json()
    assert body["dispatchId"] == request.dispatch_id and body["data"] == {"plan": "pro"}
    assert body["journeyId"] == "j-1"
    stamp, signature = (
        part.split("=", 1)[1] for part in call.headers["x-tenure-signature"].split(",")
    )
    expected = hmac.new(
        stack.keys.webhook_secret.encode(), f"{stamp}.".encode() + call.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(signature, expected)

    # loopback by address, private, metadata, and a redirect to loopback: all refused
    stack.recorder.redirects["/bounce-to-loopback"] = f"http://127.0.0.1:{port}/inside"
    for url in (
        f"http://127.0.0.1:{port}/inside",
        "http://10.0.0.7/inside",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/inside",
        "file:///etc/passwd",
        f"http://localhost:{port}/bounce-to-loopback",
    ):
        target = await _customer(stack, "ssrf", traits={"webhookUrl": url, "plan": "x"})
        refused = await stack.request(
            customer_id=target,
            channels=["webhook"],
            template_id="everywhere",
            priority="critical",
        )
        outcome = await stack.final(refused.dispatch_id)
        assert outcome["status"] == "failed", url
        assert outcome["reason"].startswith("provider_error: webhook: refused"), outcome["reason"]
    assert not stack.recorder.matching("/inside")


async def test_transient_errors_are_retried_then_succeed(stack: Stack) -> None:
    attempts: dict[str, int] = {}

    def flaky(recipients: list[str], content: bytes) -> str | None:
        if recipients == ["flaky@example.com"]:
            attempts["flaky"] = attempts.get("flaky", 0) + 1
            if attempts["flaky"] <= 2:
                return "451 4.3.0 try again later"
        if recipients == ["gone@example.com"]:
            return "550 5.1.1 no such user"
        return None

    stack.smtp.reply = flaky
    try:
        flaky_customer = await _customer(stack, "flaky", email="flaky@example.com")
        request = await stack.request(
            customer_id=flaky_customer, template_id="everywhere", priority="critical"
        )
        outcome = await stack.final(request.dispatch_id)
        assert outcome["status"] == "sent"
        assert attempts["flaky"] == 3

        gone = await _customer(stack, "gone", email="gone@example.com")
        request = await stack.request(
            customer_id=gone, template_id="everywhere", priority="critical"
        )
        outcome = await stack.final(request.dispatch_id)
        assert outcome["status"] == "failed"
        assert outcome["reason"].startswith("provider_error: smtp: 550")
        letter = await stack.dead_letters.wait_for(lambda r: r.key == gone.encode())
        headers = dict(letter.headers)
        assert headers["tenure.original_topic"] == b"dispatch.requests"
        assert b"550" in headers["tenure.error"]
        assert orjson.loads(letter.value)["dispatchId"] == request.dispatch_id
    finally:
        stack.smtp.reply = None


async def test_retries_run_out_into_a_failed_outcome(stack: Stack) -> None:
    hook = f"/down/{uuid.uuid4().hex}"
    stack.recorder.status[hook] = [503]
    customer = await _customer(
        stack,
        "down",
        traits={"webhookUrl": f"http://localhost:{stack.recorder.port}{hook}", "plan": "x"},
    )
    request = await stack.request(
        customer_id=customer, channels=["webhook"], template_id="everywhere", priority="critical"
    )
    outcome = await stack.final(request.dispatch_id)
    assert outcome["status"] == "failed"
    assert outcome["reason"].startswith("retries_exhausted: webhook: HTTP 503")
    assert len(stack.recorder.matching(hook)) == 3  # the configured attempts
