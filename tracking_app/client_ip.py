"""The client's address as far as it can be trusted, and the truncated network that is stored.

X-Forwarded-For is honoured only when the connection comes from a configured trusted proxy:
the client is then the right-most address that is not itself a trusted proxy. A full address
is never stored: IPv4 is cut to its /24, IPv6 to its /48."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

IPAddress = IPv4Address | IPv6Address
MAX_FORWARDED_ENTRIES = 20


class TrustedProxies:
    def __init__(self, cidrs: Iterable[str]) -> None:
        self._networks = tuple(ip_network(c, strict=False) for c in cidrs)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, address: IPAddress) -> bool:
        return any(address.version == n.version and address in n for n in self._networks)


@lru_cache(maxsize=8192)
def parse_address(raw: str) -> IPAddress | None:
    """The address, IPv4-mapped IPv6 as IPv4; None when `raw` is not an address. A port, as
    some proxies append it to X-Forwarded-For entries (`203.0.113.5:51234`,
    `[2001:db8::1]:443`), is dropped."""
    raw = raw.strip()
    if raw.startswith("["):
        raw, bracket, port = raw[1:].partition("]")
        if not bracket or (port and not (port[0] == ":" and _is_port(port[1:]))):
            return None
    elif raw.count(":") == 1:  # IPv4 and port (an IPv6 address has two colons or more)
        raw, _, port = raw.partition(":")
        if not _is_port(port):
            return None
    try:
        address = ip_address(raw)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_port(digits: str) -> bool:
    return 0 < len(digits) <= 5 and digits.isascii() and digits.isdigit()


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: TrustedProxies
) -> IPAddress | None:
    """The client's address: the peer, or the X-Forwarded-For client behind trusted proxies.
    A malformed forwarded chain falls back to the last trusted hop rather than failing."""
    if forwarded_for is not None and len(forwarded_for) > _CACHED_FORWARDED_MAX:
        return _client_address(peer, forwarded_for, trusted)
    # The same clients come back (a proxy, an office, a mail provider): remembered, but only
    # for short headers, so that no client can fill the cache with 8 KB ones.
    return _cached_client_address(peer, forwarded_for, trusted)


_CACHED_FORWARDED_MAX = 256


def _client_address(
    peer: str | None, forwarded_for: str | None, trusted: TrustedProxies
) -> IPAddress | None:
    address = parse_address(peer) if peer else None
    if address is None or not forwarded_for or not trusted or address not in trusted:
        return address
    hops = forwarded_for.split(",")[-MAX_FORWARDED_ENTRIES:]
    for raw in reversed(hops):
        hop = parse_address(raw)
        if hop is None:
            break
        address = hop
        if hop not in trusted:
            break
    return address


_cached_client_address = lru_cache(maxsize=8192)(_client_address)


@lru_cache(maxsize=8192)
def truncated_network(address: IPAddress) -> str:
    """The /24 (IPv4) or /48 (IPv6) network of an address, as stored in email_events."""
    prefix = 24 if address.version == 4 else 48
    return str(ip_network(f"{address}/{prefix}", strict=False))
