"""UDP tracker protocol (BEP 15) with BEP 41 options, as bytes.

`parse_request` turns one datagram into a `ConnectRequest`, `UdpAnnounce` or `UdpScrape`;
a datagram too short to carry a transaction id is `DROP`ped (there is nobody to answer), and any
other fault raises `UdpClientError`, which carries the transaction id for the error packet.
The encoders build the answers. Connection ids are checked elsewhere (`connection_id`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from .errors import ClientError
from .model import AnnounceRequest, Event, Peer, SwarmStats

PROTOCOL_ID: Final = 0x41727101980
ACTION_CONNECT: Final = 0
ACTION_ANNOUNCE: Final = 1
ACTION_SCRAPE: Final = 2
ACTION_ERROR: Final = 3
MAX_SCRAPE_HASHES: Final = 74  # what fits a 1500-byte MTU answer, as BEP 15 implies
ANNOUNCE_LENGTH: Final = 98
_EVENTS = {0: Event.UPDATE, 1: Event.COMPLETED, 2: Event.STARTED, 3: Event.STOPPED}
_EVENT_CODES = {v: k for k, v in _EVENTS.items()}
_HEADER = struct.Struct(">QII")  # connection id, action, transaction id
_ANNOUNCE = struct.Struct(">QII20s20sQQQIIIiH")
_ANNOUNCE_HEAD = struct.Struct(">IIIII")  # action, transaction id, interval, leechers, seeders
_OPTION_END, _OPTION_NOP, _OPTION_URL_DATA = 0, 1, 2


class _Drop:
    """Sentinel: a datagram with no transaction id, answered by silence."""

    def __repr__(self) -> str:
        return "DROP"


DROP: Final = _Drop()


class UdpClientError(ClientError):
    """A bad datagram that can be answered with an error packet."""

    def __init__(self, reason: str, kind: str, transaction_id: int) -> None:
        super().__init__(reason, kind)
        self.transaction_id = transaction_id


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    transaction_id: int


@dataclass(frozen=True, slots=True)
class UdpAnnounce:
    connection_id: int
    transaction_id: int
    request: AnnounceRequest


@dataclass(frozen=True, slots=True)
class UdpScrape:
    connection_id: int
    transaction_id: int
    info_hashes: tuple[bytes, ...]


UdpRequest = ConnectRequest | UdpAnnounce | UdpScrape


def parse_request(data: bytes) -> UdpRequest | _Drop:
    """Parse one datagram; raise `UdpClientError` for a bad one that has a transaction id."""
    if len(data) < 16:
        return DROP
    connection_id, action, transaction_id = _HEADER.unpack_from(data)
    if action == ACTION_CONNECT:
        if connection_id != PROTOCOL_ID:
            raise UdpClientError("connect must carry the BEP 15 protocol id", "bad_protocol_id",
                                 transaction_id)
        return ConnectRequest(transaction_id)
    if action == ACTION_ANNOUNCE:
        return _parse_announce(data, connection_id, transaction_id)
    if action == ACTION_SCRAPE:
        body = data[16:]
        if not body or len(body) % 20:
            raise UdpClientError("scrape must carry one or more 20-byte info hashes",
                                 "bad_scrape", transaction_id)
        count = len(body) // 20
        if count > MAX_SCRAPE_HASHES:
            raise UdpClientError(f"scrape of {count} info hashes is over the limit of "
                                 f"{MAX_SCRAPE_HASHES}", "too_many_hashes", transaction_id)
        hashes = tuple(body[i : i + 20] for i in range(0, len(body), 20))
        return UdpScrape(connection_id, transaction_id, hashes)
    raise UdpClientError(f"unknown action {action}", "unknown_action", transaction_id)


def _parse_announce(data: bytes, connection_id: int, transaction_id: int) -> UdpAnnounce:
    if len(data) < ANNOUNCE_LENGTH:
        raise UdpClientError(f"announce of {len(data)} bytes is shorter than {ANNOUNCE_LENGTH}",
                             "short_announce", transaction_id)
    (_, _, _, info_hash, peer_id, downloaded, left, uploaded, event_code, _ip, key,
     numwant, port) = _ANNOUNCE.unpack_from(data)
    event = _EVENTS.get(event_code)
    if event is None:
        raise UdpClientError(f"unknown event {event_code}", "bad_event", transaction_id)
    if port == 0:
        raise UdpClientError("port 0 cannot be announced", "bad_port", transaction_id)
    url_data = parse_options(data[ANNOUNCE_LENGTH:], transaction_id)
    request = AnnounceRequest(
        info_hash=info_hash,
        peer_id=peer_id,
        port=port,
        uploaded=uploaded,
        downloaded=downloaded,
        left=left,
        event=event,
        numwant=None if numwant < 0 else numwant,
        key=key.to_bytes(4, "big"),
        url_data=url_data,
    )
    return UdpAnnounce(connection_id, transaction_id, request)


def parse_options(data: bytes, transaction_id: int = 0) -> bytes:
    """BEP 41 options after an announce; returns the URL data, concatenated in order."""
    url_data: list[bytes] = []
    pos = 0
    while pos < len(data):
        kind = data[pos]
        if kind == _OPTION_END:
            break
        if kind == _OPTION_NOP:
            pos += 1
            continue
        if pos + 1 >= len(data):
            raise UdpClientError("BEP 41 option has no length byte", "bad_option", transaction_id)
        length = data[pos + 1]
        value = data[pos + 2 : pos + 2 + length]
        if len(value) != length:
            raise UdpClientError("BEP 41 option runs past the packet", "bad_option",
                                 transaction_id)
        if kind == _OPTION_URL_DATA:
            url_data.append(value)
        pos += 2 + length  # unknown options are skipped, as BEP 41 asks
    return b"".join(url_data)


def encode_options(url_data: bytes) -> bytes:
    """URL data as BEP 41 options (255 bytes per option), ending with EndOfOptions."""
    out = bytearray()
    for i in range(0, len(url_data), 255):
        chunk = url_data[i : i + 255]
        out += bytes((_OPTION_URL_DATA, len(chunk))) + chunk
    return bytes(out + b"\x00") if out else b""


def encode_connect(transaction_id: int, connection_id: bytes) -> bytes:
    return struct.pack(">II", ACTION_CONNECT, transaction_id) + connection_id


def encode_announce(transaction_id: int, interval: int, stats: SwarmStats,
                    peers: tuple[Peer, ...] | list[Peer], family_length: int,
                    compact: bytes | None = None) -> bytes:
    """Announce answer; only peers whose address length matches the request's family.

    `compact` is the peers' compact forms already joined (`SwarmAnswer.compact`); it is sent
    as it is when its length shows every peer is of the request's family.
    """
    head = _ANNOUNCE_HEAD.pack(ACTION_ANNOUNCE, transaction_id, interval, stats.incomplete,
                               stats.complete)
    if compact is not None and len(compact) == (family_length + 2) * len(peers):
        return head + compact
    return head + b"".join([p.compact() for p in peers if len(p.ip) == family_length])


def encode_scrape(transaction_id: int, stats: list[SwarmStats]) -> bytes:
    head = struct.pack(">II", ACTION_SCRAPE, transaction_id)
    return head + b"".join(struct.pack(">III", s.complete, s.downloaded, s.incomplete)
                           for s in stats)


def encode_error(transaction_id: int, message: str) -> bytes:
    return struct.pack(">II", ACTION_ERROR, transaction_id) + message.encode("utf-8")


# Client side, used by the load generator and tests, so both ends share one codec.

def build_connect(transaction_id: int) -> bytes:
    return _HEADER.pack(PROTOCOL_ID, ACTION_CONNECT, transaction_id)


def build_announce(connection_id: int, transaction_id: int, request: AnnounceRequest) -> bytes:
    key = int.from_bytes((request.key or b"\0\0\0\0")[:4].rjust(4, b"\0"), "big")
    packet = _ANNOUNCE.pack(
        connection_id, ACTION_ANNOUNCE, transaction_id, request.info_hash, request.peer_id,
        request.downloaded, request.left or 0, request.uploaded, _EVENT_CODES[request.event],
        0, key, -1 if request.numwant is None else request.numwant, request.port,
    )
    return packet + encode_options(request.url_data)


def build_scrape(connection_id: int, transaction_id: int, info_hashes: list[bytes]) -> bytes:
    return _HEADER.pack(connection_id, ACTION_SCRAPE, transaction_id) + b"".join(info_hashes)


@dataclass(frozen=True, slots=True)
class AnnounceAnswer:
    """A decoded UDP announce answer (client side)."""

    transaction_id: int
    interval: int
    stats: SwarmStats
    peers: tuple[Peer, ...]


def parse_response(data: bytes, family_length: int = 4
                   ) -> tuple[int, int, bytes | AnnounceAnswer | list[SwarmStats] | str]:
    """Decode an answer (client side): (action, transaction id, payload)."""
    if len(data) < 8:
        raise ValueError(f"answer of {len(data)} bytes is too short")
    action, transaction_id = struct.unpack_from(">II", data)
    if action == ACTION_CONNECT:
        if len(data) != 16:
            raise ValueError("connect answer must be 16 bytes")
        return action, transaction_id, data[8:16]
    if action == ACTION_ANNOUNCE:
        if len(data) < 20:
            raise ValueError("announce answer shorter than 20 bytes")
        interval, leechers, seeders = struct.unpack_from(">III", data, 8)
        step = family_length + 2
        body = data[20:]
        if len(body) % step:
            raise ValueError(f"peer list of {len(body)} bytes is not a multiple of {step}")
        peers = tuple(Peer(body[i : i + family_length],
                           int.from_bytes(body[i + family_length : i + step], "big"))
                      for i in range(0, len(body), step))
        return action, transaction_id, AnnounceAnswer(
            transaction_id, interval, SwarmStats(seeders, leechers, 0), peers)
    if action == ACTION_SCRAPE:
        body = data[8:]
        if len(body) % 12:
            raise ValueError("scrape answer is not a multiple of 12 bytes")
        stats = []
        for i in range(0, len(body), 12):
            complete, downloaded, incomplete = struct.unpack_from(">III", body, i)
            stats.append(SwarmStats(complete, incomplete, downloaded))
        return action, transaction_id, stats
    if action == ACTION_ERROR:
        return action, transaction_id, data[8:].decode("utf-8", "replace")
    raise ValueError(f"unknown action {action} in answer")
