"""HTTP tracker protocol: announce (BEP 3, 7, 23, 24, 31) and scrape (BEP 48), as bytes.

Requests are parsed from the raw query string, because info_hash and peer_id are arbitrary
binary percent-encoded into it; a framework's text decoding would corrupt them. Answers are
bencoded dictionaries. Every rejection is a `ClientError` whose reason becomes the bencoded
`failure reason` a client shows its user.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote_from_bytes, unquote_to_bytes

from . import bencode
from .errors import BencodeError, ClientError
from .model import (
    INFO_HASH_LENGTH,
    PEER_ID_LENGTH,
    AnnounceReply,
    AnnounceRequest,
    Event,
    Peer,
    ScrapeRequest,
    SwarmStats,
    check_info_hash,
    ip_text,
    pack_ip,
)

MAX_COUNTER = (1 << 63) - 1
MAX_NUMWANT = (1 << 31) - 1

_EVENTS = {
    b"": Event.UPDATE,
    b"empty": Event.UPDATE,
    b"paused": Event.UPDATE,  # BEP 21: a partial seed that stopped downloading, still present
    b"started": Event.STARTED,
    b"completed": Event.COMPLETED,
    b"stopped": Event.STOPPED,
}
_ANNOUNCE_KEYS = frozenset(
    {b"info_hash", b"peer_id", b"port", b"uploaded", b"downloaded", b"left", b"event",
     b"numwant", b"num_want", b"compact", b"no_peer_id", b"key"}
)


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """Bounds on what a query may hold, from settings."""

    max_query_bytes: int = 4096
    max_scrape_hashes: int = 74


def percent_decode(raw: bytes) -> bytes:
    """`urllib.parse.unquote_to_bytes`, at a tenth of its cost for a binary info hash.

    Each %XX becomes a \\xXX escape for the C escape decoder (`codecs.escape_decode`, which
    pickle uses too), after doubling any backslash already there; a malformed escape (which
    urllib keeps as literal text) makes it refuse, and urllib decides those.
    """
    if b"%" not in raw:
        return raw
    try:
        return codecs.escape_decode(raw.replace(b"\\", b"\\\\").replace(b"%", b"\\x"))[0]
    except ValueError:
        return unquote_to_bytes(raw)


def split_query(query: bytes, limits: QueryLimits, repeatable: frozenset[bytes] = frozenset(),
                known: frozenset[bytes] | None = None) -> dict[bytes, list[bytes]]:
    """Split and percent-decode a raw query; a known key given twice is refused unless repeatable."""
    if len(query) > limits.max_query_bytes:
        raise ClientError(
            f"query of {len(query)} bytes is over the {limits.max_query_bytes}-byte limit",
            "query_too_long",
        )
    params: dict[bytes, list[bytes]] = {}
    for part in query.split(b"&"):
        if not part:
            continue
        name, _, raw = part.partition(b"=")
        key = percent_decode(name) if b"%" in name else name
        if known is not None and key not in known and key not in repeatable:
            continue
        value = percent_decode(raw) if b"%" in raw else raw
        values = params.get(key)
        if values is None:
            params[key] = [value]
        elif key in repeatable:
            values.append(value)
        else:
            raise ClientError(f"parameter {key.decode('latin-1')} is given more than once",
                              "repeated_parameter")
    return params


def _single(params: Mapping[bytes, list[bytes]], key: bytes) -> bytes | None:
    values = params.get(key)
    return values[0] if values else None


def _integer(params: Mapping[bytes, list[bytes]], key: bytes, *, maximum: int,
             default: int | None = None, kind: str = "bad_number") -> int | None:
    raw = _single(params, key)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 20:
        raise ClientError(f"{key.decode()} must be a non-negative integer", kind)
    value = int(raw)
    if value > maximum:
        raise ClientError(f"{key.decode()} {value} is out of range (at most {maximum})", kind)
    return value


def parse_announce(query: bytes, limits: QueryLimits = QueryLimits(),
                   key: bytes | None = None) -> AnnounceRequest:
    """Parse `/announce?<query>` into a request, or raise `ClientError` saying what is wrong."""
    params = split_query(query, limits, known=_ANNOUNCE_KEYS)
    info_hash = _single(params, b"info_hash")
    if info_hash is None:
        raise ClientError("info_hash is missing", "missing_info_hash")
    check_info_hash(info_hash)
    peer_id = _single(params, b"peer_id")
    if peer_id is None:
        raise ClientError("peer_id is missing", "missing_peer_id")
    if len(peer_id) != PEER_ID_LENGTH:
        raise ClientError(f"peer_id must be {PEER_ID_LENGTH} bytes, got {len(peer_id)}",
                          "bad_peer_id")
    port = _integer(params, b"port", maximum=65535, kind="bad_port")
    if not port:
        raise ClientError("port is missing or 0; it must be 1 to 65535", "bad_port")
    raw_event = _single(params, b"event")
    event = _EVENTS.get(raw_event if raw_event is not None else b"")
    if event is None:
        raise ClientError("event must be started, completed, stopped or empty", "bad_event")
    numwant_raw = _single(params, b"numwant") or _single(params, b"num_want")
    numwant: int | None = None
    if numwant_raw is not None and numwant_raw != b"-1":
        if not numwant_raw.isdigit() or len(numwant_raw) > 20 or int(numwant_raw) > MAX_NUMWANT:
            raise ClientError(f"numwant must be an integer from 0 to {MAX_NUMWANT}", "bad_numwant")
        numwant = int(numwant_raw)
    return AnnounceRequest(
        info_hash=info_hash,
        peer_id=peer_id,
        port=port,
        uploaded=_integer(params, b"uploaded", maximum=MAX_COUNTER, default=0) or 0,
        downloaded=_integer(params, b"downloaded", maximum=MAX_COUNTER, default=0) or 0,
        left=_integer(params, b"left", maximum=MAX_COUNTER),
        event=event,
        numwant=numwant,
        compact=_single(params, b"compact") != b"0",
        no_peer_id=_single(params, b"no_peer_id") not in (None, b"0"),
        key=key if key is not None else _single(params, b"key"),
    )


def parse_scrape(query: bytes, limits: QueryLimits = QueryLimits()) -> ScrapeRequest:
    """Parse `/scrape?info_hash=...&info_hash=...`; no info_hash means a full scrape."""
    params = split_query(query, limits, repeatable=frozenset({b"info_hash"}),
                         known=frozenset({b"info_hash"}))
    hashes = params.get(b"info_hash", [])
    if len(hashes) > limits.max_scrape_hashes:
        raise ClientError(
            f"scrape of {len(hashes)} info hashes is over the limit of {limits.max_scrape_hashes}",
            "too_many_hashes",
        )
    for info_hash in hashes:
        check_info_hash(info_hash)
    return ScrapeRequest(tuple(dict.fromkeys(hashes)))


# The announce and scrape answers are built by concatenation around these fixed fragments, in
# the sorted key order bencode requires: for the answer every client gets on every announce,
# the generic encoder's sort and recursion cost more than the rest of the encoding together.
# tests/unit/test_answer_encoding.py holds them equal to `bencode.encode` of the same values.
_ANNOUNCE_HEAD = (b"d8:completei%de10:downloadedi%de11:external ip%d:%s10:incompletei%de"
                  b"8:intervali%de12:min intervali%de")
_SCRAPE_FILE = b"%d:%sd8:completei%de10:downloadedi%de10:incompletei%dee"


def _compact_peers(reply: AnnounceReply) -> tuple[bytes, bytes]:
    """The answer's peers as compact strings: (IPv4 peers, IPv6 peers)."""
    peers = reply.answer.peers
    joined = reply.answer.compact
    if joined is not None:
        # A store's joined compact forms: their length tells their family (6 or 18 bytes each)
        if len(joined) == 6 * len(peers):
            return joined, b""
        if len(joined) == 18 * len(peers):
            return b"", joined
    v4: list[bytes] = []
    v6: list[bytes] = []
    for p in peers:
        (v4 if len(p.ip) == 4 else v6).append(p.compact())
    return b"".join(v4), b"".join(v6)


def encode_announce(reply: AnnounceReply, request: AnnounceRequest) -> bytes:
    """The bencoded answer: counts, intervals, peers of the client's family, its external ip."""
    if not request.compact:
        return _encode_listed_announce(reply, request)
    stats = reply.answer.stats
    client_ip = reply.client_ip
    v4, v6 = _compact_peers(reply)
    parts = [_ANNOUNCE_HEAD % (stats.complete, stats.downloaded, len(client_ip), client_ip,
                               stats.incomplete, reply.interval, reply.min_interval),
             b"5:peers%d:" % len(v4), v4]
    if v6 or len(client_ip) == 16:
        parts += (b"6:peers6%d:" % len(v6), v6)
    if reply.warning:
        warning = reply.warning.encode("utf-8")
        parts += (b"15:warning message%d:" % len(warning), warning)
    parts.append(b"e")
    return b"".join(parts)


def _encode_listed_announce(reply: AnnounceReply, request: AnnounceRequest) -> bytes:
    """A non-compact answer (BEP 3's list of dictionaries), through the generic encoder."""
    answer = reply.answer
    body: dict[bytes, bencode.Encodable] = {
        b"complete": answer.stats.complete,
        b"incomplete": answer.stats.incomplete,
        b"downloaded": answer.stats.downloaded,
        b"interval": reply.interval,
        b"min interval": reply.min_interval,
        b"external ip": reply.client_ip,
    }
    v4: list[bencode.Encodable] = []
    v6: list[bencode.Encodable] = []
    for p in answer.peers:
        entry: dict[bytes | str, bencode.Encodable] = {b"ip": ip_text(p.ip), b"port": p.port}
        if not request.no_peer_id:
            entry[b"peer id"] = p.peer_id
        (v4 if len(p.ip) == 4 else v6).append(entry)
    body[b"peers"] = v4 + v6
    if reply.warning:
        body[b"warning message"] = reply.warning
    return bencode.encode(body)


def encode_failure(reason: str, retry_in_minutes: int | None = None) -> bytes:
    """A bencoded `failure reason`; with BEP 31 `retry in` when the client should come back."""
    body: dict[bytes, bencode.Encodable] = {b"failure reason": reason}
    if retry_in_minutes is not None:
        body[b"retry in"] = retry_in_minutes
    return bencode.encode(body)


def encode_scrape(files: Mapping[bytes, SwarmStats], min_interval: int | None = None) -> bytes:
    """BEP 48 scrape answer: `files` keyed by raw info hash."""
    parts = [b"d5:filesd"]
    for info_hash, s in sorted(files.items()):
        parts.append(_SCRAPE_FILE % (len(info_hash), info_hash, s.complete, s.downloaded,
                                     s.incomplete))
    parts.append(b"e")
    if min_interval is not None:
        parts.append(b"5:flagsd20:min_request_intervali%dee" % min_interval)
    parts.append(b"e")
    return b"".join(parts)


# Client side, used by the load generator and tests, so both ends share one codec.

_EVENT_NAMES = {Event.STARTED: b"started", Event.COMPLETED: b"completed",
                Event.STOPPED: b"stopped"}


def _quote(value: bytes) -> bytes:
    return quote_from_bytes(value, safe="-_.~").encode("ascii")


def build_announce_query(request: AnnounceRequest) -> bytes:
    """The query string a client sends for `request` (binary fields percent-encoded)."""
    parts = [
        b"info_hash=" + _quote(request.info_hash),
        b"peer_id=" + _quote(request.peer_id),
        b"port=%d" % request.port,
        b"uploaded=%d" % request.uploaded,
        b"downloaded=%d" % request.downloaded,
    ]
    if request.left is not None:
        parts.append(b"left=%d" % request.left)
    if request.event in _EVENT_NAMES:
        parts.append(b"event=" + _EVENT_NAMES[request.event])
    if request.numwant is not None:
        parts.append(b"numwant=%d" % request.numwant)
    parts.append(b"compact=1" if request.compact else b"compact=0")
    if request.no_peer_id:
        parts.append(b"no_peer_id=1")
    if request.key is not None:
        parts.append(b"key=" + _quote(request.key))
    return b"&".join(parts)


def build_scrape_query(info_hashes: list[bytes] | tuple[bytes, ...]) -> bytes:
    return b"&".join(b"info_hash=" + _quote(h) for h in info_hashes)


@dataclass(frozen=True, slots=True)
class AnnounceAnswer:
    """A decoded HTTP announce answer (client side); `failure` set when the tracker refused."""

    stats: SwarmStats = SwarmStats()
    interval: int = 0
    min_interval: int | None = None
    peers: tuple[Peer, ...] = ()
    external_ip: bytes | None = None
    warning: str | None = None
    failure: str | None = None
    retry_in: int | None = None


def _peer_list(value: object, length: int) -> list[Peer]:
    if isinstance(value, bytes):
        step = length + 2
        if len(value) % step:
            raise ValueError(f"compact peers of {len(value)} bytes, not a multiple of {step}")
        return [Peer(value[i : i + length], int.from_bytes(value[i + length : i + step], "big"))
                for i in range(0, len(value), step)]
    if isinstance(value, list):
        peers = []
        for entry in value:
            if not isinstance(entry, dict):
                raise ValueError("non-compact peer is not a dictionary")
            ip, port = entry.get(b"ip"), entry.get(b"port")
            if not isinstance(ip, bytes) or not isinstance(port, int):
                raise ValueError("non-compact peer lacks ip or port")
            peer_id = entry.get(b"peer id", b"")
            peers.append(Peer(pack_ip(ip.decode()), port,
                              peer_id if isinstance(peer_id, bytes) else b""))
        return peers
    raise ValueError("peers is neither a string nor a list")


def _decode_answer(body: bytes) -> bencode.Value:
    """Bencode from a tracker: on the client side, bad bencode is a ValueError like the rest."""
    try:
        return bencode.decode(body)
    except BencodeError as exc:
        raise ValueError(f"answer is not valid bencode: {exc.reason}") from exc


def decode_announce_answer(body: bytes) -> AnnounceAnswer:
    """Decode and validate an announce answer; raise ValueError if it is not a valid one."""
    value = _decode_answer(body)
    if not isinstance(value, dict):
        raise ValueError("announce answer is not a dictionary")
    failure = value.get(b"failure reason")
    if failure is not None:
        if not isinstance(failure, bytes):
            raise ValueError("failure reason is not a string")
        retry = value.get(b"retry in")
        return AnnounceAnswer(failure=failure.decode("utf-8", "replace"),
                              retry_in=retry if isinstance(retry, int) else None)

    def integer(key: bytes, default: int | None = None) -> int:
        item = value.get(key, default)
        if not isinstance(item, int) or item < 0:
            raise ValueError(f"{key.decode()} missing or not a non-negative integer")
        return item

    peers = _peer_list(value.get(b"peers", b""), 4)
    if b"peers6" in value:
        peers += _peer_list(value[b"peers6"], 16)
    warning = value.get(b"warning message")
    external = value.get(b"external ip")
    min_interval = value.get(b"min interval")
    return AnnounceAnswer(
        stats=SwarmStats(integer(b"complete", 0), integer(b"incomplete", 0),
                         integer(b"downloaded", 0)),
        interval=integer(b"interval"),
        min_interval=min_interval if isinstance(min_interval, int) else None,
        peers=tuple(peers),
        external_ip=external if isinstance(external, bytes) else None,
        warning=warning.decode("utf-8", "replace") if isinstance(warning, bytes) else None,
    )


def decode_scrape_answer(body: bytes) -> dict[bytes, SwarmStats]:
    """Decode a scrape answer (client side); raise ValueError if malformed or a failure."""
    value = _decode_answer(body)
    if not isinstance(value, dict):
        raise ValueError("scrape answer is not a dictionary")
    if b"failure reason" in value:
        raise ValueError(f"scrape refused: {value[b'failure reason']!r}")
    files = value.get(b"files")
    if not isinstance(files, dict):
        raise ValueError("scrape answer has no files dictionary")
    out = {}
    for info_hash, entry in files.items():
        if not isinstance(entry, dict):
            raise ValueError("scrape entry is not a dictionary")
        numbers = [entry.get(k) for k in (b"complete", b"incomplete", b"downloaded")]
        if not all(isinstance(n, int) and n >= 0 for n in numbers):
            raise ValueError("scrape entry lacks a count")
        out[info_hash] = SwarmStats(*numbers)  # type: ignore[arg-type]
    return out


__all__ = [
    "INFO_HASH_LENGTH",
    "AnnounceAnswer",
    "QueryLimits",
    "build_announce_query",
    "build_scrape_query",
    "decode_announce_answer",
    "decode_scrape_answer",
    "encode_announce",
    "encode_failure",
    "encode_scrape",
    "parse_announce",
    "parse_scrape",
    "split_query",
]
