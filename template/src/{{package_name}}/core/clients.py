"""Who a request comes from, for throttling (`throttle`): the socket peer, or behind trusted
reverse proxies, the address they saw (`X-Forwarded-For`).

`X-Forwarded-For` is written by whoever sends the request, so only the part added by proxies
this service trusts (`TRUSTED_PROXIES`) means anything: each proxy appends the address it
received the request from. The header is read from the right, skipping trusted proxies; the
first address that is not one is the client. With no trusted proxies the header is ignored:
a client could otherwise pick any address, and a fresh counter, for each request.

IPv6 clients are keyed by their /64: one host usually owns a whole /64, and could otherwise
take a new address, and a fresh counter, for each request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

#: The client of a request whose peer is not an IP address (a Unix socket, a test client):
#: such requests share one counter.
UNKNOWN = "unknown"


@dataclass(frozen=True)
class TrustedProxies:
    """The reverse proxies whose `X-Forwarded-For` entries are believed."""

    networks: tuple[Network, ...] = ()
    #: Whether a peer that is no IP address (a proxy on a Unix socket) is trusted (`unix`).
    unix: bool = False

    @classmethod
    def parse(cls, text: str | None) -> TrustedProxies:
        """Read `TRUSTED_PROXIES`: comma-separated IPv4 or IPv6 addresses and networks
        (`10.0.0.5, 10.1.0.0/16, fd00::/8`), and `unix` for a proxy that connects over a Unix
        socket. None or blank: no proxy is trusted. An entry that is neither raises ValueError
        naming it."""
        networks: list[Network] = []
        unix = False
        for entry in (text or "").split(","):
            entry = entry.strip()
            if not entry:
                continue
            if entry.lower() == "unix":
                unix = True
                continue
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network; list the reverse proxies "
                    f"in front of the service as addresses or networks separated by commas, "
                    f"such as 10.0.0.5, 10.1.0.0/16, fd00::/8 (or unix, for a Unix socket)"
                ) from None
            networks.append(_unmapped_network(network))
        return cls(tuple(networks), unix)

    def __bool__(self) -> bool:
        return bool(self.networks) or self.unix

    def __contains__(self, address: object) -> bool:
        return any(address in network for network in self.networks)


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted: TrustedProxies) -> str:
    """The client of a request, as a throttling key of at most 45 characters: an IPv4
    address, an IPv6 /64 (`2001:db8:1:2::/64`), or `UNKNOWN` for a peer that is not an IP
    address.

    `peer` is the socket's remote address; `forwarded_for` every `X-Forwarded-For` value of
    the request, in order. They are read only when the peer is a trusted proxy: from the right,
    skipping trusted proxies, the first other address is the client. An entry that is not an
    address stops the walk: the last trusted hop is taken as the client.
    """
    address = _address(peer) if peer else None
    if address is None and not trusted.unix:
        return UNKNOWN
    if address is None or address in trusted:
        hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
        for hop in reversed(hops):
            candidate = _address(hop)
            if candidate is None:
                break
            address = candidate
            if candidate not in trusted:
                break
    if address is None:
        return UNKNOWN
    if address.version == 6:
        return str(IPv6Network((address, 64), strict=False))
    return str(address)


def _address(text: str) -> Address | None:
    """An address as a peer or a proxy writes it, or None; a port is dropped
    (`192.0.2.1:443`, `[2001:db8::1]:443`), an IPv4-mapped IPv6 address is the IPv4 one."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id:
            return IPv6Address(int(address))
    return address


def _unmapped_network(network: Network) -> Network:
    """An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 one it maps, since
    peers are compared as IPv4 addresses."""
    mapped = network.network_address
    if (
        isinstance(mapped, IPv6Address)
        and mapped.ipv4_mapped is not None
        and network.prefixlen >= 96
    ):
        return IPv4Network((mapped.ipv4_mapped, network.prefixlen - 96))
    return network
