"""The hot path's shortcuts equal the plain constructions they replace.

`http.encode_announce`, `http.encode_scrape` and `udp.encode_announce` build their answers by
concatenating fixed fragments and, when a store gives them, peers' compact forms joined ahead
of time; `http.percent_decode` decodes queries with the C escape decoder. These tests hold them
to the generic bencode encoder and to urllib.
"""

from __future__ import annotations

import struct
from urllib.parse import unquote_to_bytes

from hypothesis import given
from hypothesis import strategies as st

from services.core import bencode, http, udp
from services.core.model import AnnounceReply, AnnounceRequest, Peer, SwarmAnswer, SwarmStats

from .strategies import http_announces, info_hashes, ipv4, ipv6, peers, ports, stats

one_family = st.lists(st.builds(Peer, ip=ipv4, port=ports), max_size=30) | st.lists(
    st.builds(Peer, ip=ipv6, port=ports), max_size=30)
any_family = st.lists(peers, max_size=30)
counts = st.integers(min_value=0, max_value=2**63 - 1)


def reference_announce(reply: AnnounceReply, request: AnnounceRequest) -> bytes:
    answer = reply.answer
    body: dict[bytes, bencode.Encodable] = {
        b"complete": answer.stats.complete,
        b"incomplete": answer.stats.incomplete,
        b"downloaded": answer.stats.downloaded,
        b"interval": reply.interval,
        b"min interval": reply.min_interval,
        b"external ip": reply.client_ip,
    }
    v4 = [p for p in answer.peers if len(p.ip) == 4]
    v6 = [p for p in answer.peers if len(p.ip) == 16]
    if request.compact:
        body[b"peers"] = b"".join(p.compact() for p in v4)
        if v6 or len(reply.client_ip) == 16:
            body[b"peers6"] = b"".join(p.compact() for p in v6)
    else:
        listed: list[bencode.Encodable] = []
        for p in v4 + v6:
            entry: dict[bytes, bencode.Encodable] = {b"ip": http.ip_text(p.ip), b"port": p.port}
            if not request.no_peer_id:
                entry[b"peer id"] = p.peer_id
            listed.append(entry)
        body[b"peers"] = listed
    if reply.warning:
        body[b"warning message"] = reply.warning
    return bencode.encode(body)


def answer_of(counts: SwarmStats, peer_list: list[Peer], joined: bool) -> SwarmAnswer:
    compact = b"".join(p.compact() for p in peer_list) if joined else None
    return SwarmAnswer(counts, tuple(peer_list), compact)


@given(http_announces(), stats, one_family | any_family, st.booleans(),
       st.sampled_from([bytes([10, 0, 0, 1]), bytes(15) + b"\x01"]),
       st.none() | st.text(max_size=40), counts, counts)
def test_announce_answer_equals_generic_encoding(request: AnnounceRequest, swarm: SwarmStats,
                                                 peer_list: list[Peer], joined: bool,
                                                 client_ip: bytes, warning: str | None,
                                                 interval: int, min_interval: int) -> None:
    reply = AnnounceReply(answer_of(swarm, peer_list, joined), interval, min_interval,
                          client_ip, warning)
    assert http.encode_announce(reply, request) == reference_announce(reply, request)


@given(st.dictionaries(info_hashes, stats, max_size=80), st.none() | counts)
def test_scrape_answer_equals_generic_encoding(files: dict[bytes, SwarmStats],
                                               min_interval: int | None) -> None:
    body: dict[bytes, bencode.Encodable] = {b"files": {
        h: {b"complete": s.complete, b"incomplete": s.incomplete, b"downloaded": s.downloaded}
        for h, s in files.items()}}
    if min_interval is not None:
        body[b"flags"] = {b"min_request_interval": min_interval}
    assert http.encode_scrape(files, min_interval) == bencode.encode(body)


@given(st.integers(0, 2**32 - 1), stats, one_family | any_family, st.booleans(),
       st.sampled_from([4, 16]))
def test_udp_announce_answer_with_joined_peers(tid: int, swarm: SwarmStats,
                                               peer_list: list[Peer], joined: bool,
                                               family_length: int) -> None:
    answer = answer_of(swarm, peer_list, joined)
    packet = udp.encode_announce(tid, 1800, swarm, answer.peers, family_length, answer.compact)
    expected = struct.pack(">IIIII", udp.ACTION_ANNOUNCE, tid, 1800, swarm.incomplete,
                           swarm.complete) + b"".join(
        p.compact() for p in peer_list if len(p.ip) == family_length)
    assert packet == expected


@given(st.binary(max_size=40) | st.lists(st.sampled_from(
    [b"%", b"%4", b"%41", b"%fF", b"%G1", b"\\", b"\\x41", b"x", b"\xff", b"\x00", b"+"]),
    max_size=12).map(b"".join))
def test_percent_decode_equals_urllib(raw: bytes) -> None:
    assert http.percent_decode(raw) == unquote_to_bytes(raw)
