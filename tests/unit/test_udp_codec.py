"""UDP (BEP 15) codec: requests and answers round-trip, BEP 41 URL data is carried."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core import udp
from services.core.model import AnnounceRequest, Peer

from .strategies import info_hashes, peers, stats, udp_announces


@given(st.integers(0, 2**32 - 1))
def test_connect_round_trip(tid: int) -> None:
    parsed = udp.parse_request(udp.build_connect(tid))
    assert parsed == udp.ConnectRequest(tid)
    action, got_tid, cid = udp.parse_response(udp.encode_connect(tid, b"12345678"))
    assert (action, got_tid, cid) == (udp.ACTION_CONNECT, tid, b"12345678")


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), udp_announces())
def test_announce_round_trip(cid: int, tid: int, request: AnnounceRequest) -> None:
    parsed = udp.parse_request(udp.build_announce(cid, tid, request))
    assert parsed == udp.UdpAnnounce(cid, tid, request)


@given(st.integers(0, 2**32 - 1), stats, st.lists(peers, max_size=40),
       st.sampled_from([4, 16]))
def test_announce_answer_round_trip(tid, counts, peer_list, family_length) -> None:
    packet = udp.encode_announce(tid, 1800, counts, peer_list, family_length)
    action, got_tid, answer = udp.parse_response(packet, family_length)
    assert (action, got_tid) == (udp.ACTION_ANNOUNCE, tid)
    assert isinstance(answer, udp.AnnounceAnswer)
    assert answer.interval == 1800
    assert (answer.stats.complete, answer.stats.incomplete) == (counts.complete, counts.incomplete)
    assert [p.endpoint for p in answer.peers] == \
        [p.endpoint for p in peer_list if len(p.ip) == family_length]


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1),
       st.lists(info_hashes, min_size=1, max_size=74))
def test_scrape_round_trip(cid, tid, hashes) -> None:
    assert udp.parse_request(udp.build_scrape(cid, tid, hashes)) == \
        udp.UdpScrape(cid, tid, tuple(hashes))


@given(st.integers(0, 2**32 - 1), st.lists(stats, max_size=74))
def test_scrape_answer_round_trip(tid, counts) -> None:
    action, got_tid, got = udp.parse_response(udp.encode_scrape(tid, counts))
    assert (action, got_tid, got) == (udp.ACTION_SCRAPE, tid, counts)


def test_error_round_trip() -> None:
    assert udp.parse_response(udp.encode_error(7, "nope")) == (udp.ACTION_ERROR, 7, "nope")


def test_bep41_options_nop_end_and_unknown() -> None:
    options = b"\x01\x02\x04/abc\x05\x02zz\x02\x05?x=12\x00\x02\x03ign"
    assert udp.parse_options(options) == b"/abc?x=12"


def test_short_datagrams_are_dropped_and_bad_ones_answered() -> None:
    assert udp.parse_request(b"\x00" * 15) is udp.DROP
    with pytest.raises(udp.UdpClientError) as info:
        udp.parse_request(struct.pack(">QII", 1, 9, 77))
    assert (info.value.kind, info.value.transaction_id) == ("unknown_action", 77)


def test_peer_compact_form() -> None:
    assert Peer(bytes([127, 0, 0, 1]), 6881).compact() == bytes([127, 0, 0, 1, 0x1A, 0xE1])
