"""Which addresses the client may contact without being told to: public ones only.

An image name must not become a way to make the controller probe the
cluster's network (docs/threat-model.md). A host that is an IP literal, or a name resolving
to a loopback, private, link-local, reserved or cloud-metadata address, is
contacted only when the registry config names it. The client checks before
each request; :class:`GuardedResolver` checks again at connect time, on the
addresses the connection will really use, so DNS that changes its answer in
between (rebinding) is caught too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from controller.errors import LookupFailed

METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)


def split_hostport(hostport: str) -> tuple[str, int | None]:
    """``reg:5000`` → (``reg``, 5000); ``[::1]:5000`` → (``::1``, 5000); ``reg`` → (``reg``, None)."""
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    return host, int(port) if port.isdigit() else None


def address_kind(address: str) -> str | None:
    """Why we refuse to contact ``address`` unasked, or None when it is a public address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "unparsable"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return "reserved"
    if ip.is_private or not ip.is_global:
        return "private"
    return None


class PrivateAddressError(OSError):
    """Raised inside the connector's resolver; aiohttp wraps it in a connector error."""

    def __init__(self, host: str, address: str, kind: str) -> None:
        super().__init__(f"{host} resolves to a {kind} address ({address})")
        self.host = host
        self.address = address
        self.kind = kind


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that refuses names resolving to non-public addresses unless allowed.

    The per-request check already resolved the name; this second look at the
    addresses the connection will actually use catches DNS rebinding.
    """

    def __init__(self, allowed: Callable[[str], bool]) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allowed = allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self._allowed(host):
            for result in results:
                kind = address_kind(result["host"])
                if kind is not None:
                    raise PrivateAddressError(host, result["host"], kind)
        return results

    async def close(self) -> None:
        await self._inner.close()


async def address_verdict(host: str, port: int | None) -> str:
    """'' when every address is public, else what to say about the first that is not."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    else:
        kind = address_kind(host)
        return f"resolves to a {kind} address" if kind else ""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise LookupFailed(
            f"cannot resolve registry host {host}: {getattr(exc, 'strerror', None) or exc}",
            context={"registry": host, "code": "DNS"},
        ) from None
    for info in infos:
        address = str(info[4][0])
        kind = address_kind(address)
        if kind is not None:
            return f"resolves to a {kind} address ({address})"
    return ""
