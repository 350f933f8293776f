"""What a load test aims at, and the rule that it aims only at this machine.

A load generator pointed at someone else's tracker is an attack, so every target must resolve to
loopback addresses only (127.0.0.0/8 or ::1); anything else is refused before a packet is sent.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


class TargetError(ValueError):
    """A target that cannot or must not be loaded; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Target:
    protocol: str  # "http" or "udp"
    host: str  # a loopback address literal, as resolved
    port: int
    announce_path: str  # HTTP only: "/announce" or a private "/announce/<key>"
    url: str

    @property
    def scrape_path(self) -> str:
        """BEP 48's convention: the last `announce` of the path becomes `scrape`."""
        head, sep, tail = self.announce_path.rpartition("/announce")
        return head + "/scrape" + tail if sep else "/scrape"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _loopback_address(host: str, port: int, url: str) -> str:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise TargetError(f"cannot resolve {host!r} in {url}: {exc.strerror}") from exc
    addresses = [str(info[4][0]).split("%", 1)[0] for info in infos]
    outside = [a for a in addresses if not ipaddress.ip_address(a).is_loopback]
    if outside or not addresses:
        raise TargetError(
            f"refusing to send load to {url}: {host} resolves to {', '.join(sorted(set(outside)))}, "
            "which is not a loopback address. meridian loadtest only sends to this machine "
            "(127.0.0.0/8 or ::1): run it on the tracker's host against 127.0.0.1.")
    return addresses[0]


def parse_target(url: str, protocol: str | None = None) -> Target:
    """Parse an http:// announce URL or a udp:// tracker URL; refuse anything not on loopback."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "udp"):
        raise TargetError(f"{url!r} is neither an http:// announce URL nor a udp:// tracker URL"
                          + (" (https is not load-tested; use the plain HTTP port)"
                             if scheme == "https" else ""))
    if protocol is not None and protocol != scheme:
        raise TargetError(f"--protocol {protocol} contradicts the URL {url}; the scheme decides, "
                          "so drop --protocol or change the URL")
    try:
        port = parts.port
    except ValueError as exc:
        raise TargetError(f"bad port in {url}: {exc}") from exc
    if not parts.hostname:
        raise TargetError(f"{url} names no host")
    port = port or (80 if scheme == "http" else 6969)
    host = _loopback_address(parts.hostname, port, url)
    path = parts.path or "/announce"
    if scheme == "http" and "/announce" not in path:
        raise TargetError(f"{url} is not an announce URL (its path should end in /announce)")
    return Target(scheme, host, port, path, url)
