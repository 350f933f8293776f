"""The tracker's nouns: peers, announce events, requests and the answers a swarm gives.

Addresses are kept packed (4 bytes for IPv4, 16 for IPv6) because that is what compact answers
send; an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as dual-stack sockets report IPv4 clients)
is unmapped to IPv4 so one client never appears in both families.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

from .errors import ClientError

INFO_HASH_LENGTH = 20
PEER_ID_LENGTH = 20
_V4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


class Event(enum.Enum):
    """What an announce says about the peer; `UPDATE` is the regular re-announce."""

    UPDATE = "update"
    STARTED = "started"
    COMPLETED = "completed"
    STOPPED = "stopped"


class Family(enum.Enum):
    IPV4 = 4
    IPV6 = 6


def pack_ip(text: str) -> bytes:
    """Packed form of a textual address, IPv4-mapped IPv6 unmapped; raise ValueError if invalid."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.packed
    return address.packed


def normalize_packed_ip(packed: bytes) -> bytes:
    if len(packed) == 16 and packed.startswith(_V4_MAPPED_PREFIX):
        return packed[12:]
    if len(packed) not in (4, 16):
        raise ValueError(f"a packed IP is 4 or 16 bytes, not {len(packed)}")
    return packed


def ip_text(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


def family_of(packed_ip: bytes) -> Family:
    return Family.IPV4 if len(packed_ip) == 4 else Family.IPV6


@dataclass(frozen=True, slots=True)
class Peer:
    """A peer as a swarm knows it: identity is (ip, port); peer_id is data for non-compact answers."""

    ip: bytes
    port: int
    peer_id: bytes = b""

    @property
    def family(self) -> Family:
        return family_of(self.ip)

    @property
    def endpoint(self) -> tuple[bytes, int]:
        return (self.ip, self.port)

    def compact(self) -> bytes:
        return self.ip + self.port.to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class AnnounceRequest:
    """One announce as the client sent it, over HTTP or UDP, before the tracker decides anything.

    `numwant` is None when the client left it to the tracker. `left` is None when an HTTP client
    omitted it (the peer then counts as a leecher). `key` and `url_data` carry BEP 27 and BEP 41
    material for access control.
    """

    info_hash: bytes
    peer_id: bytes
    port: int
    uploaded: int = 0
    downloaded: int = 0
    left: int | None = None
    event: Event = Event.UPDATE
    numwant: int | None = None
    compact: bool = True
    no_peer_id: bool = False
    key: bytes | None = None
    url_data: bytes = b""

    @property
    def seeder(self) -> bool:
        return self.left == 0


@dataclass(frozen=True, slots=True)
class ScrapeRequest:
    """A scrape of the listed info hashes; an empty tuple asks for a full scrape."""

    info_hashes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SwarmStats:
    """Counts for one torrent: seeders (`complete`), leechers (`incomplete`), finished downloads."""

    complete: int = 0
    incomplete: int = 0
    downloaded: int = 0


@dataclass(frozen=True, slots=True)
class SwarmAnswer:
    """What a store gives back for one announce: counts and up to numwant peers of one family.

    `compact`, when a store has it at hand, is `b"".join(p.compact() for p in peers)`: the
    memory store keeps each peer's compact form from its first announce, so the encoders join
    those instead of rebuilding every peer on every answer. It takes no part in equality.
    """

    stats: SwarmStats
    peers: tuple[Peer, ...]
    compact: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AnnounceReply:
    """Everything an answer to an announce carries, protocol-neutral."""

    answer: SwarmAnswer
    interval: int
    min_interval: int
    client_ip: bytes
    warning: str | None = None
    stale_age: float | None = None  # set when answered from a node's cache, not the store


def check_info_hash(value: bytes) -> bytes:
    if len(value) != INFO_HASH_LENGTH:
        raise ClientError(
            f"info_hash must be {INFO_HASH_LENGTH} bytes, got {len(value)}", "bad_info_hash"
        )
    return value
