"""Three regions in the sandbox (one Kafka; per region a Redis, an announce node and a
reconciler), on loopback: peers announced in one region reach the others, `stopped` removes
them everywhere, a restarted reconciler catches up, a flushed Redis is rebuilt, and after
quiescence every region holds the same live peers."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from services.core.model import AnnounceRequest, Event
from services.ops import sandbox
from tests.clients import HttpClient, UdpClient

REGIONS = ["eu", "us", "ap"]
CONVERGE = 30.0  # seconds to wait for cross-region effects
pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def regions(sandbox_regions: dict[str, Any]) -> dict[str, Any]:
    assert list(sandbox_regions["regions"]) == REGIONS
    return sandbox_regions


def http(state: dict[str, Any], region: str) -> HttpClient:
    return HttpClient(f"http://127.0.0.1:{state['regions'][region]['port']}")


def ports_seen(state: dict[str, Any], region: str, info_hash: bytes, probe_port: int) -> set[int]:
    """The peers a leecher in `region` is given (the probe itself then leaves)."""
    client = http(state, region)
    try:
        answer = client.announce(AnnounceRequest(info_hash, b"probe-" + bytes(14), probe_port,
                                                 left=1, numwant=200))
        client.announce(AnnounceRequest(info_hash, b"probe-" + bytes(14), probe_port, left=1,
                                        event=Event.STOPPED))
        return {p.port for p in answer.peers}
    finally:
        client.close()


def eventually(check: Callable[[], bool], what: str, timeout: float = CONVERGE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.25)


def live_peers(state: dict[str, Any], region: str) -> dict[bytes, set[bytes]]:
    """Every live peer of every swarm in a region's Redis, read directly (inspection only)."""
    client = redis.Redis.from_url(state["regions"][region]["redis"])
    now = time.time()
    out: dict[bytes, set[bytes]] = {}
    try:
        for key in client.scan_iter(match=b"m:*", count=1000):
            if key[-2:] not in (b"s4", b"l4", b"s6", b"l6"):
                continue
            members = client.zrangebyscore(key, f"({now}", "+inf")
            if members:
                out.setdefault(key[:-2], set()).update(m + key[-2:] for m in members)
    finally:
        client.close()
    return out


def test_a_peer_announced_in_eu_reaches_us_and_ap(regions: dict[str, Any]) -> None:
    info_hash = os.urandom(20)
    eu = http(regions, "eu")
    try:
        eu.announce(AnnounceRequest(info_hash, b"S" * 20, 50001, left=0, event=Event.STARTED))
    finally:
        eu.close()
    for region in ("us", "ap"):
        eventually(lambda r=region: 50001 in ports_seen(regions, r, info_hash, 50100),
                   f"the eu peer in {region}")
    udp = UdpClient("127.0.0.1", regions["regions"]["us"]["port"])
    try:
        answer = udp.announce(AnnounceRequest(info_hash, b"U" * 20, 50002, left=5))
        assert 50001 in {p.port for p in answer.peers}
    finally:
        udp.close()


def test_stopped_in_eu_removes_the_peer_everywhere(regions: dict[str, Any]) -> None:
    info_hash = os.urandom(20)
    eu = http(regions, "eu")
    try:
        eu.announce(AnnounceRequest(info_hash, b"T" * 20, 51001, left=0, event=Event.STARTED))
        for region in ("us", "ap"):
            eventually(lambda r=region: 51001 in ports_seen(regions, r, info_hash, 51100),
                       f"the eu peer in {region}")
        eu.announce(AnnounceRequest(info_hash, b"T" * 20, 51001, left=0, event=Event.STOPPED))
    finally:
        eu.close()
    for region in ("eu", "us", "ap"):
        eventually(lambda r=region: 51001 not in ports_seen(regions, r, info_hash, 51100),
                   f"the stopped peer gone from {region}")


def test_a_killed_reconciler_catches_up_after_restart(regions: dict[str, Any]) -> None:
    old = regions["regions"]["ap"]["pids"]["reconciler"]
    os.kill(old, signal.SIGKILL)  # a process the sandbox started, by its PID
    eventually(lambda: not sandbox.alive(old), "the killed reconciler gone", 10)
    info_hash = os.urandom(20)
    eu = http(regions, "eu")
    try:
        for n in range(5):
            eu.announce(AnnounceRequest(info_hash, bytes([n]) * 20, 52000 + n, left=0))
    finally:
        eu.close()
    time.sleep(1)
    assert not {52000, 52001} & ports_seen(regions, "ap", info_hash, 52100)
    sandbox.start_role(regions, "ap", "reconciler")
    eventually(lambda: {52000 + n for n in range(5)} <= ports_seen(regions, "ap", info_hash, 52100),
               "ap caught up after its reconciler restarted", 60)


def test_a_flushed_redis_is_rebuilt_to_the_swarms_it_had(regions: dict[str, Any]) -> None:
    info_hash = os.urandom(20)
    us = http(regions, "us")
    try:
        for n in range(3):  # peers announced in us itself, and the eu peers from before
            us.announce(AnnounceRequest(info_hash, bytes([n + 10]) * 20, 53000 + n, left=0))
    finally:
        us.close()
    eventually(lambda: live_peers(regions, "us") == live_peers(regions, "eu")
               == live_peers(regions, "ap"), "regions equal before the flush", 60)
    before = live_peers(regions, "us")
    assert before
    client = redis.Redis.from_url(regions["regions"]["us"]["redis"])
    try:
        client.flushall()
    finally:
        client.close()
    eventually(lambda: live_peers(regions, "us") == before, "us rebuilt from Kafka", 60)


def test_after_quiescence_every_region_holds_the_same_live_peers(
        regions: dict[str, Any]) -> None:
    for n in range(30):
        region = REGIONS[n % 3]
        client = http(regions, region)
        try:
            client.announce(AnnounceRequest(os.urandom(20), bytes([n]) * 20, 54000 + n,
                                            left=n % 2, event=Event.STARTED))
        finally:
            client.close()
    eventually(lambda: live_peers(regions, "eu") == live_peers(regions, "us")
               == live_peers(regions, "ap"), "all swarms equal in all regions", 60)
    assert len(live_peers(regions, "eu")) >= 30
