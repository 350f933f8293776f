"""The real tracker process on loopback: HTTP and UDP announce and scrape, IPv4 and IPv6,
many peers, seeders and leechers, as a client sees them."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from services.core.model import AnnounceRequest, Event, Peer
from tests.clients import HttpClient, UdpClient
from tests.servers import RunningTracker

HOSTS = ["127.0.0.1", "::1"]


def peer_id(n: int) -> bytes:
    return b"-MT0001-" + n.to_bytes(12, "big")


@pytest.fixture
def http4(tracker: RunningTracker) -> Iterator[HttpClient]:
    client = HttpClient(tracker.base("127.0.0.1"))
    yield client
    client.close()


@pytest.mark.parametrize("host", HOSTS)
def test_http_swarm_of_seeders_and_leechers(tracker: RunningTracker, host: str) -> None:
    client = HttpClient(tracker.base(host))
    info_hash = os.urandom(20)
    seeders, leechers = range(0, 5), range(5, 25)
    try:
        for n in list(seeders) + list(leechers):
            answer = client.announce(AnnounceRequest(
                info_hash, peer_id(n), 10000 + n, left=0 if n in seeders else 100,
                event=Event.STARTED, numwant=0))
            assert answer.failure is None
        # a leecher sees everyone but itself, up to numwant
        answer = client.announce(AnnounceRequest(info_hash, peer_id(5), 10005, left=100,
                                                 numwant=200))
        assert (answer.stats.complete, answer.stats.incomplete) == (5, 20)
        ports = sorted(p.port for p in answer.peers)
        assert ports == [10000 + n for n in range(25) if n != 5]
        assert answer.external_ip is not None and len(answer.external_ip) == (4 if host == "127.0.0.1" else 16)
        # a seeder is given leechers only
        answer = client.announce(AnnounceRequest(info_hash, peer_id(0), 10000, left=0,
                                                 numwant=200))
        assert sorted(p.port for p in answer.peers) == [10000 + n for n in leechers]
        # numwant caps
        answer = client.announce(AnnounceRequest(info_hash, peer_id(6), 10006, left=1, numwant=7))
        assert len(answer.peers) == 7 and len({p.port for p in answer.peers}) == 7
        # completed then stopped
        client.announce(AnnounceRequest(info_hash, peer_id(6), 10006, left=0,
                                        event=Event.COMPLETED))
        client.announce(AnnounceRequest(info_hash, peer_id(7), 10007, left=5, event=Event.STOPPED))
        stats = client.scrape([info_hash])[info_hash]
        assert (stats.complete, stats.incomplete, stats.downloaded) == (6, 18, 1)
    finally:
        client.close()


def test_ipv4_and_ipv6_swarms_are_kept_apart(tracker: RunningTracker) -> None:
    info_hash = os.urandom(20)
    v4, v6 = HttpClient(tracker.base("127.0.0.1")), HttpClient(tracker.base("::1"))
    try:
        v4.announce(AnnounceRequest(info_hash, peer_id(1), 7001, left=0))
        v6.announce(AnnounceRequest(info_hash, peer_id(2), 7002, left=0))
        answer = v4.announce(AnnounceRequest(info_hash, peer_id(3), 7003, left=9))
        assert [p.endpoint for p in answer.peers] == [(bytes([127, 0, 0, 1]), 7001)]
        answer = v6.announce(AnnounceRequest(info_hash, peer_id(4), 7004, left=9))
        assert [p.endpoint for p in answer.peers] == [(bytes(15) + b"\x01", 7002)]
        assert (answer.stats.complete, answer.stats.incomplete) == (2, 2)
    finally:
        v4.close()
        v6.close()


def test_non_compact_answers(tracker: RunningTracker, http4: HttpClient) -> None:
    info_hash = os.urandom(20)
    http4.announce(AnnounceRequest(info_hash, peer_id(1), 7001, left=0))
    answer = http4.announce(AnnounceRequest(info_hash, peer_id(2), 7002, left=3, compact=False))
    assert [(p.endpoint, p.peer_id) for p in answer.peers] == \
        [((bytes([127, 0, 0, 1]), 7001), peer_id(1))]
    answer = http4.announce(AnnounceRequest(info_hash, peer_id(2), 7002, left=3, compact=False,
                                            no_peer_id=True))
    assert [(p.endpoint, p.peer_id) for p in answer.peers] == [((bytes([127, 0, 0, 1]), 7001), b"")]


def test_same_endpoint_replaces_copied_peer_id_does_not(tracker: RunningTracker,
                                                        http4: HttpClient) -> None:
    info_hash = os.urandom(20)
    http4.announce(AnnounceRequest(info_hash, peer_id(1), 7001, left=5))
    http4.announce(AnnounceRequest(info_hash, peer_id(9), 7001, left=0))  # same endpoint
    http4.announce(AnnounceRequest(info_hash, peer_id(9), 7002, left=5))  # copied id elsewhere
    stats = http4.scrape([info_hash])[info_hash]
    assert (stats.complete, stats.incomplete) == (1, 1)


@pytest.mark.parametrize("host", HOSTS)
def test_udp_announce_and_scrape(tracker: RunningTracker, host: str) -> None:
    info_hash = os.urandom(20)
    clients = [UdpClient(host, tracker.port) for _ in range(3)]
    try:
        for n, client in enumerate(clients):
            client.announce(AnnounceRequest(info_hash, peer_id(n), 20000 + n,
                                            left=0 if n == 0 else 50, event=Event.STARTED))
        answer = clients[1].announce(AnnounceRequest(info_hash, peer_id(1), 20001, left=50))
        assert (answer.stats.complete, answer.stats.incomplete) == (1, 2)
        expected_ip = bytes([127, 0, 0, 1]) if host == "127.0.0.1" else bytes(15) + b"\x01"
        assert sorted(p.endpoint for p in answer.peers) == [(expected_ip, 20000), (expected_ip, 20002)]
        answer = clients[0].announce(AnnounceRequest(info_hash, peer_id(0), 20000, left=0))
        assert sorted(p.port for p in answer.peers) == [20001, 20002]  # seeder gets leechers
        unknown = os.urandom(20)
        stats = clients[2].scrape([info_hash, unknown])
        assert [(s.complete, s.incomplete) for s in stats] == [(1, 2), (0, 0)]
    finally:
        for client in clients:
            client.close()


def test_udp_and_http_share_swarms(tracker: RunningTracker, http4: HttpClient) -> None:
    info_hash = os.urandom(20)
    udp = UdpClient("127.0.0.1", tracker.port)
    try:
        udp.announce(AnnounceRequest(info_hash, peer_id(1), 30001, left=0))
        answer = http4.announce(AnnounceRequest(info_hash, peer_id(2), 30002, left=1))
        assert [p.endpoint for p in answer.peers] == [Peer(bytes([127, 0, 0, 1]), 30001).endpoint]
    finally:
        udp.close()


def test_connection_id_works_from_another_source_port(tracker: RunningTracker) -> None:
    first, second = UdpClient("127.0.0.1", tracker.port), UdpClient("127.0.0.1", tracker.port)
    try:
        second.connection_id = first.connect()
        answer = second.announce(AnnounceRequest(os.urandom(20), peer_id(1), 1234, left=0))
        assert answer.interval > 0
    finally:
        first.close()
        second.close()


def test_health_ready_metrics(tracker: RunningTracker, http4: HttpClient) -> None:
    assert http4.raw("/health").json()["status"] == "ok"
    assert http4.raw("/ready").json()["ready"] is True
    metrics = http4.raw("/metrics").text
    assert 'meridian_requests_total{action="announce",protocol="http",result="ok"}' in metrics
    assert "meridian_peers " in metrics
