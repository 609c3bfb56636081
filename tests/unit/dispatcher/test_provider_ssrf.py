"""Issue 21: every URL a provider calls goes through the SSRF guard, and a provider's
error answer is never echoed into the outcome's reason."""

from __future__ import annotations

import base64
import ipaddress
import os

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.dispatcher.channels.base import (
    Outgoing,
    PermanentProviderError,
    TransientProviderError,
)
from services.dispatcher.channels.http import (
    MessengerProvider,
    MessengerSettings,
    WebhookProvider,
    WebhookSettings,
    WebPushProvider,
    WebPushSettings,
)
from services.dispatcher.channels.ssrf import SsrfGuard, UnsafeTarget, is_public
from services.dispatcher.contacts import WebPushAddress
from services.dispatcher.templates import Rendered
from shared.events.channels import Channel


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _vapid_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _subscription(endpoint: str) -> WebPushAddress:
    receiver = ec.generate_private_key(ec.SECP256R1()).public_key()
    public = receiver.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return WebPushAddress(endpoint=endpoint, p256dh=_b64(public), auth=_b64(os.urandom(16)))


def _message(address: object, channel: Channel = Channel.PUSH) -> Outgoing:
    return Outgoing(
        dispatch_id="d-1",
        customer_id="c-1",
        channel=channel,
        address=address,  # type: ignore[arg-type]
        rendered=Rendered(channel=channel, locale="default", title="t", text="x"),
        template_id="t",
    )


class Recorder:
    def __init__(self, status: int = 201, body: str = "") -> None:
        self.calls: list[httpx.Request] = []
        self.status, self.body = status, body

    def client(self) -> httpx.AsyncClient:
        def handle(request: httpx.Request) -> httpx.Response:
            self.calls.append(request)
            return httpx.Response(self.status, text=self.body)

        return httpx.AsyncClient(transport=httpx.MockTransport(handle))


INTERNAL_ENDPOINTS = [
    "http://127.0.0.1:9/push/abc",
    "http://localhost/push",
    "http://[::1]/push",
    "http://169.254.169.254/latest/meta-data/",
    "http://[2002:7f00:1::]/push",  # 6to4 wrapping 127.0.0.1
    "http://[64:ff9b::7f00:1]/push",  # NAT64 wrapping 127.0.0.1
    "http://[64:ff9b::a00:1]/push",  # NAT64 wrapping 10.0.0.1
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/push",  # Teredo
    "http://[::127.0.0.1]/push",  # IPv4-compatible
    "file:///etc/passwd",
]


@pytest.mark.parametrize("endpoint", INTERNAL_ENDPOINTS)
async def test_a_web_push_endpoint_on_an_internal_host_is_never_called(endpoint: str) -> None:
    recorder = Recorder()
    provider = WebPushProvider(WebPushSettings(vapid_private_key=_vapid_pem()), recorder.client())
    with pytest.raises(PermanentProviderError) as caught:
        await provider.send(_message(_subscription(endpoint)))
    assert recorder.calls == []
    assert caught.value.reason.startswith("webpush: refused the URL")
    assert "127" not in caught.value.reason and "169.254" not in caught.value.reason


@pytest.mark.parametrize(
    "address",
    ["2002:7f00:1::", "2002:0a00:0001::", "64:ff9b::7f00:1", "64:ff9b:1::1", "::127.0.0.1"],
)
def test_ipv6_forms_carrying_an_internal_ipv4_address_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


def test_ipv6_forms_carrying_a_public_ipv4_address_stay_public() -> None:
    assert is_public(ipaddress.ip_address("2002:0808:0808::"))
    assert is_public(ipaddress.ip_address("64:ff9b::808:808"))
    assert is_public(ipaddress.ip_address("2606:4700::1111"))


async def test_the_guard_never_names_the_address_it_refused() -> None:
    with pytest.raises(UnsafeTarget) as caught:
        await SsrfGuard().check("http://10.1.2.3/alice")
    assert "10.1.2.3" not in str(caught.value) and "alice" not in str(caught.value)


SECRET_BODY = "550 <alice@example.com> internal stack trace at 10.0.0.7 token=abc"


@pytest.mark.parametrize(
    ("status", "error"), [(502, TransientProviderError), (400, PermanentProviderError)]
)
async def test_provider_error_bodies_never_reach_the_reason(
    status: int, error: type[Exception]
) -> None:
    recorder = Recorder(status, SECRET_BODY)
    webpush = WebPushProvider(
        WebPushSettings(vapid_private_key=_vapid_pem(), allow="127.0.0.1"), recorder.client()
    )
    with pytest.raises(error) as caught:
        await webpush.send(_message(_subscription("http://127.0.0.1:9/push/abc")))
    assert caught.value.reason == f"webpush: HTTP {status}"  # type: ignore[attr-defined]

    messenger = MessengerProvider(
        MessengerSettings(base_url="http://127.0.0.1:9", page_access_token="p", allow="127.0.0.1"),
        recorder.client(),
    )
    with pytest.raises(error) as caught:
        await messenger.send(_message("psid", Channel.MESSENGER))
    assert caught.value.reason == f"messenger: HTTP {status}"  # type: ignore[attr-defined]

    webhook = WebhookProvider(
        WebhookSettings(secret="s" * 32, allow="127.0.0.1"), recorder.client()
    )
    with pytest.raises(error) as caught:
        await webhook.send(_message("http://127.0.0.1:9/hook", Channel.WEBHOOK))
    assert caught.value.reason == f"webhook: HTTP {status}"  # type: ignore[attr-defined]


async def test_a_configured_provider_url_goes_through_the_guard_too() -> None:
    recorder = Recorder()
    messenger = MessengerProvider(
        MessengerSettings(base_url="http://127.0.0.1:9", page_access_token="p"), recorder.client()
    )
    with pytest.raises(PermanentProviderError, match="messenger: refused the URL"):
        await messenger.send(_message("psid", Channel.MESSENGER))
    assert recorder.calls == []
