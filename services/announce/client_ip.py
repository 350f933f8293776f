"""Which IP an HTTP announce comes from.

The socket's peer address, unless that peer is a reverse proxy in the trusted CIDR list: then
the configured header (X-Forwarded-For style) is read from the right, skipping trusted hops, so
a client cannot forge its address by sending the header itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from services.core.model import pack_ip

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientAddress:
    def __init__(self, trusted_proxies: Sequence[str], header: str) -> None:
        self._trusted: tuple[Network, ...] = tuple(
            ipaddress.ip_network(c, strict=False) for c in trusted_proxies)
        self.header = header.lower()

    def _is_trusted(self, text: str) -> bool:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in self._trusted)

    def resolve(self, peer_host: str, header_value: str | None) -> bytes:
        """Packed client IP; raises ValueError if no usable address is found."""
        if not self._trusted or header_value is None or not self._is_trusted(peer_host):
            return pack_ip(peer_host)
        hops = [h.strip() for h in header_value.split(",") if h.strip()]
        for hop in reversed(hops):
            if self._is_trusted(hop):
                continue
            try:
                return pack_ip(hop)
            except ValueError:
                break  # garbage from beyond the last trusted proxy: believe the proxy itself
        return pack_ip(peer_host)
