"""Where a server-side request may go: the address guard and the resolver that feeds it.

Anything that connects to a URL it was given (the fetcher, the webhook sender) resolves the
host once, checks every address here, and pins the connection to a checked address, so a DNS
answer cannot point a request at the cloud metadata service or an internal host.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

import httpx

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Cloud metadata endpoints (AWS/GCP/Azure, AWS IPv6, ECS task metadata, Alibaba).
METADATA_ADDRESSES: frozenset[_IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200")
)

#: Refused whatever the policy: site-local (deprecated, yet ``is_global`` on Python 3.11) and
#: local-use NAT64 (it may translate to any IPv4 address, internal ones included).
DENIED_NETWORKS: tuple[ipaddress.IPv6Network, ...] = tuple(
    ipaddress.IPv6Network(n) for n in ("fec0::/10", "64:ff9b:1::/48")
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")

#: ``resolver(host, port) -> [ip, ...]``; injectable so tests never touch DNS.
Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        if address not in addresses:
            addresses.append(address)
    return addresses


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a packet to ``ip`` may be delivered to: IPv4-mapped and -compatible,
    NAT64 (64:ff9b::/96), 6to4 (2002::/16) and Teredo (server and client)."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    elif ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):  # not :: nor ::1
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def check_address(address: str, *, private_ok: bool) -> str | None:
    """``None`` when we may connect to ``address``, else why not."""
    try:
        ip: _IPAddress = ipaddress.ip_address(address)
    except ValueError:
        return f"not an IP address: {address!r}"
    if isinstance(ip, ipaddress.IPv6Address):
        for network in DENIED_NETWORKS:
            if ip in network:
                return f"{ip} is in {network}, which is never allowed"
        embedded = embedded_ipv4(ip)
        for inner in embedded:
            problem = _check_ip(inner, private_ok=private_ok)
            if problem is not None:
                return f"{ip} embeds {inner}: {problem}"
        if ip.ipv4_mapped is not None:  # the IPv4 address itself, as far as routing goes
            ip = ip.ipv4_mapped
    return _check_ip(ip, private_ok=private_ok)


def _check_ip(ip: _IPAddress, *, private_ok: bool) -> str | None:
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_link_local:
        return f"{ip} is link-local"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return f"{ip} is not a unicast address"
    if ip.is_global:
        return None
    if private_ok and (ip.is_loopback or ip.is_private):
        return None
    return f"{ip} is a private or loopback address"


def resolve_addresses(target: httpx.URL, resolve: Resolver) -> tuple[str, list[str]]:
    """The host as DNS sees it (IDNA-encoded) and the addresses a connection to ``target``
    would use: the literal address, or what ``resolve`` returns. Raises ``LookupError``."""
    host = target.raw_host.decode("ascii")
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        ipaddress.ip_address(host)
        return host, [host]
    except ValueError:
        pass
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise LookupError(f"cannot resolve {host}: {exc}") from None
    if not addresses:
        raise LookupError(f"cannot resolve {host}: no addresses")
    return host, addresses
