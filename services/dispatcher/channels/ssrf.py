"""The one guard in front of every URL the dispatcher calls that comes from data or
configuration (a customer's ``webhookUrl`` trait or Web Push subscription endpoint, a
configured webhook, a provider's base URL): no loopback, private, link-local, multicast, reserved or
cloud-metadata target, checked on the addresses the name resolves to — and again on
every redirect — and the request then goes to the address that was checked (no
second resolution a DNS rebinding could change). ``allow`` lists hosts, addresses
or networks let through anyway (tests, a development endpoint on loopback).

IPv6 forms that carry an IPv4 address — IPv4-mapped ``::ffff:a.b.c.d``, 6to4
``2002:AABB:CCDD::``, NAT64 ``64:ff9b::/96`` and ``64:ff9b:1::/48``, Teredo
``2001::/32``, IPv4-compatible ``::a.b.c.d`` — are judged by the address they carry
(and a Teredo or local-use NAT64 address is never public).

An :class:`UnsafeTarget` says why in a few words and never names the address (its
``str()`` ends up in a delivery's reason, readable through the API).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: metadata services that are not all caught by the address classes
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("169.254.170.2"),
    ipaddress.ip_address("100.100.100.200"),
    ipaddress.ip_address("fd00:ec2::254"),
}


class UnsafeTarget(Exception):
    """The URL may not be requested; ``str()`` says why, without the URL or address."""


@dataclass(frozen=True, slots=True)
class PinnedUrl:
    """A URL checked safe: request ``url`` (the host replaced by the checked address)
    with ``Host: host_header`` and TLS SNI / certificate name ``hostname``."""

    original: str
    url: str
    hostname: str
    host_header: str


#: how long a name's checked addresses are reused (the request still goes to them)
_RESOLVED_TTL_S = 30.0


class SsrfGuard:
    """Checks URLs and pins them to a checked address. Resolutions are cached for
    :data:`_RESOLVED_TTL_S` seconds per (host, port): the pinned address is the checked
    one, so the cache gives DNS rebinding nothing to work with."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self._resolved: dict[tuple[str, int], tuple[float, list[IpAddress]]] = {}
        self._hosts: set[str] = set()
        self._networks: list[IpNetwork] = []
        for entry in (e.strip() for e in allow):
            if not entry:
                continue
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._hosts.add(entry.lower())

    def _allowed(self, host: str, address: IpAddress | None) -> bool:
        if host.lower() in self._hosts:
            return True
        return address is not None and any(address in net for net in self._networks)

    async def check(self, url: str) -> PinnedUrl:
        """The URL pinned to a safe address; :class:`UnsafeTarget` otherwise."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise UnsafeTarget("only http and https URLs may be called")
        host = parts.hostname
        if not host:
            raise UnsafeTarget("the URL has no host")
        if parts.username or parts.password:
            raise UnsafeTarget("the URL may not carry credentials")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise UnsafeTarget("the URL has a bad port") from None
        addresses = await self._resolve(host, port)
        if not addresses:
            raise UnsafeTarget("the host does not resolve")
        for address in addresses:
            if not self._allowed(host, address) and not is_public(address):
                raise UnsafeTarget("the host is not at a public address")
        chosen = addresses[0]
        literal = f"[{chosen}]" if chosen.version == 6 else str(chosen)
        netloc = f"{literal}:{parts.port}" if parts.port else literal
        host_header = parts.netloc.rsplit("@", 1)[-1]
        return PinnedUrl(
            original=url,
            url=urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")),
            hostname=host,
            host_header=host_header,
        )

    async def _resolve(self, host: str, port: int) -> list[IpAddress]:
        key = (host.lower(), port)
        now = time.monotonic()
        cached = self._resolved.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await _resolve(host, port)
        if len(self._resolved) > 4_096:
            self._resolved.clear()
        self._resolved[key] = (now + _RESOLVED_TTL_S, found)
        return found


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, compatible)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.teredo is not None or address in _NAT64_LOCAL:
            return False
        carried = embedded_ipv4(address)
        if carried is not None:
            address = carried
    return not (
        address in _METADATA
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


async def _resolve(host: str, port: int) -> list[IpAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise UnsafeTarget("the host does not resolve") from None
    found: list[IpAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    # IPv4 first: a name with both is pinned to its IPv4 address
    return sorted(found, key=lambda a: a.version)
