"""The guard in front of URLs that come from data (a customer's ``webhookUrl`` trait,
a configured webhook): no loopback, private, link-local, multicast, reserved or
cloud-metadata target, checked on the addresses the name resolves to — and again on
every redirect — and the request then goes to the address that was checked (no
second resolution a DNS rebinding could change). ``allow`` lists hosts, addresses
or networks let through anyway (tests, a development endpoint on loopback).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
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
    """The URL may not be requested; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class PinnedUrl:
    """A URL checked safe: request ``url`` (the host replaced by the checked address)
    with ``Host: host_header`` and TLS SNI / certificate name ``hostname``."""

    original: str
    url: str
    hostname: str
    host_header: str


class SsrfGuard:
    def __init__(self, allow: Iterable[str] = ()) -> None:
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
            raise UnsafeTarget(f"only http and https URLs may be called, not {parts.scheme!r}")
        host = parts.hostname
        if not host:
            raise UnsafeTarget("the URL has no host")
        if parts.username or parts.password:
            raise UnsafeTarget("the URL may not carry credentials")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = await _resolve(host, port)
        if not addresses:
            raise UnsafeTarget(f"{host} does not resolve")
        for address in addresses:
            if not self._allowed(host, address) and not is_public(address):
                raise UnsafeTarget(f"{host} resolves to {address}, which is not a public address")
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


def is_public(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
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
    except OSError as exc:
        raise UnsafeTarget(f"{host} does not resolve: {exc}") from None
    found: list[IpAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    # IPv4 first: a name with both is pinned to its IPv4 address
    return sorted(found, key=lambda a: a.version)
