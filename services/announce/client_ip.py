"""Which IP an HTTP announce comes from.

The socket's peer address, unless that peer is a reverse proxy in the trusted CIDR list: then
the configured header (X-Forwarded-For style) is read from the right, skipping trusted hops, so
a client cannot forge its address by sending the header itself.

A socket's address text is packed with `inet_pton`, about a tenth of the cost of `ipaddress`
(which remains the judge of anything `inet_pton` refuses, and of header values).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

from services.core.model import normalize_packed_ip, pack_ip

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def pack_host(text: str) -> bytes:
    """Packed form of a socket's peer address text, IPv4-mapped IPv6 unmapped, as `pack_ip`.

    Raises ValueError if it is no address.
    """
    try:
        return normalize_packed_ip(
            socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text))
    except OSError:  # e.g. a scope id (fe80::1%eth0): the slow path knows more forms
        return pack_ip(text)


class ClientAddress:
    def __init__(self, trusted_proxies: Sequence[str], header: str) -> None:
        self._trusted: tuple[Network, ...] = tuple(
            ipaddress.ip_network(c, strict=False) for c in trusted_proxies)
        self.header = header.lower()
        self.raw_header = self.header.encode("latin-1")  # as ASGI servers give header names

    @property
    def reads_header(self) -> bool:
        """Whether `resolve` may look at the header at all (only behind trusted proxies)."""
        return bool(self._trusted)

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
            return pack_host(peer_host)
        hops = [h.strip() for h in header_value.split(",") if h.strip()]
        for hop in reversed(hops):
            if self._is_trusted(hop):
                continue
            try:
                return pack_ip(hop)
            except ValueError:
                break  # garbage from beyond the last trusted proxy: believe the proxy itself
        return pack_host(peer_host)
