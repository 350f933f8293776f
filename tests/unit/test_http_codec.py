"""HTTP announce and scrape codecs: round trips, raw binary parameters, the answer's fields."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core import bencode, http
from services.core.errors import ClientError
from services.core.model import AnnounceReply, AnnounceRequest, Event, Peer, SwarmAnswer

from .strategies import http_announces, info_hashes, peers, stats


@given(http_announces())
def test_announce_query_round_trip(request: AnnounceRequest) -> None:
    assert http.parse_announce(http.build_announce_query(request)) == request


@given(st.lists(info_hashes, min_size=1, max_size=74, unique=True))
def test_scrape_query_round_trip(hashes: list[bytes]) -> None:
    assert http.parse_scrape(http.build_scrape_query(hashes)).info_hashes == tuple(hashes)


def test_binary_info_hash_with_every_awkward_byte() -> None:
    raw = b"%&=+ \x00\xff/?#" + bytes(range(250, 256)) + b"abcd"
    assert len(raw) == 20
    query = b"info_hash=" + b"".join(b"%%%02X" % c for c in raw) + \
        b"&peer_id=-qB4650-abcdefghijkl&port=6881"
    assert http.parse_announce(query).info_hash == raw


def test_plus_is_a_literal_byte_not_a_space() -> None:
    query = b"info_hash=" + b"+" * 20 + b"&peer_id=" + b"p" * 20 + b"&port=1"
    assert http.parse_announce(query).info_hash == b"+" * 20


@given(http_announces(), stats, st.lists(peers, max_size=30, unique_by=lambda p: p.endpoint),
       st.sampled_from([bytes([10, 0, 0, 1]), bytes(15) + b"\x01"]),
       st.none() | st.text(max_size=40))
def test_announce_answer_round_trip(request: AnnounceRequest, counts, peer_list, client_ip,
                                    warning) -> None:
    reply = AnnounceReply(SwarmAnswer(counts, tuple(peer_list)), 1800, 900, client_ip, warning)
    answer = http.decode_announce_answer(http.encode_announce(reply, request))
    assert answer.failure is None
    assert answer.stats == counts
    assert (answer.interval, answer.min_interval) == (1800, 900)
    assert answer.external_ip == client_ip
    assert answer.warning == (warning or None)
    got = {p.endpoint for p in answer.peers}
    assert got == {p.endpoint for p in peer_list}
    if not request.compact and not request.no_peer_id:
        assert {p.endpoint: p.peer_id for p in answer.peers} == \
            {p.endpoint: p.peer_id for p in peer_list}


def test_compact_answer_layout() -> None:
    v4 = Peer(bytes([1, 2, 3, 4]), 0x1A2B, b"x" * 20)
    v6 = Peer(bytes(range(16)), 80, b"y" * 20)
    request = AnnounceRequest(b"h" * 20, b"p" * 20, 1)
    reply = AnnounceReply(SwarmAnswer(stats=http.SwarmStats(1, 2, 3), peers=(v4, v6)), 60, 30,
                          bytes(15) + b"\x01")
    body = bencode.decode(http.encode_announce(reply, request))
    assert isinstance(body, dict)
    assert body[b"peers"] == bytes([1, 2, 3, 4, 0x1A, 0x2B])
    assert body[b"peers6"] == bytes(range(16)) + b"\x00\x50"
    assert body[b"external ip"] == bytes(15) + b"\x01"
    assert (body[b"complete"], body[b"incomplete"], body[b"downloaded"]) == (1, 2, 3)


def test_non_compact_answer_without_peer_ids() -> None:
    request = AnnounceRequest(b"h" * 20, b"p" * 20, 1, compact=False, no_peer_id=True)
    reply = AnnounceReply(SwarmAnswer(http.SwarmStats(), (Peer(bytes([9, 9, 9, 9]), 7, b"z" * 20),)),
                          60, 30, bytes([1, 1, 1, 1]))
    body = bencode.decode(http.encode_announce(reply, request))
    assert body[b"peers"] == [{b"ip": b"9.9.9.9", b"port": 7}]  # type: ignore[index]


def test_failure_with_retry_in() -> None:
    answer = http.decode_announce_answer(http.encode_failure("busy", retry_in_minutes=5))
    assert (answer.failure, answer.retry_in) == ("busy", 5)


def test_events() -> None:
    base = b"info_hash=" + b"a" * 20 + b"&peer_id=" + b"b" * 20 + b"&port=9"
    for name, event in [(b"started", Event.STARTED), (b"stopped", Event.STOPPED),
                        (b"completed", Event.COMPLETED), (b"", Event.UPDATE),
                        (b"empty", Event.UPDATE), (b"paused", Event.UPDATE)]:
        assert http.parse_announce(base + b"&event=" + name).event is event


def test_huge_numwant_is_refused_large_one_kept_for_the_tracker_to_cap() -> None:
    base = b"info_hash=" + b"a" * 20 + b"&peer_id=" + b"b" * 20 + b"&port=9&numwant="
    assert http.parse_announce(base + b"5000").numwant == 5000
    assert http.parse_announce(base + b"-1").numwant is None
    with pytest.raises(ClientError) as info:
        http.parse_announce(base + b"99999999999999999999999")
    assert info.value.kind == "bad_numwant"


def test_client_side_decoders_raise_value_error_on_bad_bencode() -> None:
    for decoder in (http.decode_announce_answer, http.decode_scrape_answer):
        with pytest.raises(ValueError, match="not valid bencode"):
            decoder(b"d8:intervali1e")  # unterminated
