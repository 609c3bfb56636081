"""The SSRF guard on addresses given literally (no DNS needed) and the webhook signature."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.dispatcher.channels.http import sign_webhook
from services.dispatcher.channels.ssrf import SsrfGuard, UnsafeTarget, is_public


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1.2.3:8080/x",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.100.100.200/",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "ftp://8.8.8.8/",
        "http://user:pw@8.8.8.8/",
        "http:///nohost",
    ],
)
async def test_refused(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        await SsrfGuard().check(url)


async def test_public_address_is_pinned_and_allow_list_lets_loopback_through() -> None:
    pinned = await SsrfGuard().check("https://8.8.8.8:8443/hook?a=1")
    assert (pinned.url, pinned.host_header) == ("https://8.8.8.8:8443/hook?a=1", "8.8.8.8:8443")
    allowed = await SsrfGuard(["127.0.0.0/8"]).check("http://127.0.0.1:9/x")
    assert allowed.url == "http://127.0.0.1:9/x"


@given(st.ip_addresses())
def test_is_public_agrees_with_the_address_classes(address: ipaddress.IPv4Address) -> None:
    if is_public(address):
        assert address.is_global
        assert not (address.is_private or address.is_loopback or address.is_link_local)


def test_webhook_signature_is_hmac_of_timestamp_and_body() -> None:
    header = sign_webhook(b"secret", b'{"a":1}', 1_700_000_000)
    expected = hmac.new(b"secret", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
