"""What the Redis store promises beyond the contract: its key layout, lean compact path, script
reloading, batching, URLs, and `StoreUnavailable` when Redis is down or stalls.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
import redis
from redis.cluster import key_slot

from services.core.model import Event, Peer, SwarmStats
from services.settings import Settings
from services.stores import open_store
from services.stores.base import StoreUnavailable
from services.stores.redis import (
    RedisPeerStore,
    cluster_nodes,
    info_hash_of_key,
    open_redis_store,
    peer_id_of,
    peer_record,
    swarm_keys,
)
from tests.redis_servers import start_redis
from tests.servers import stop_process

from .conftest import PEER_TTL, StoreFactory
from .test_peer_store import OTHER, T0, TORRENT, endpoints, join, v4, v6


@pytest.fixture(params=["redis", "redis-cluster"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def sync_client(url: str) -> redis.Redis | redis.RedisCluster:
    if url.startswith("redis+cluster://"):
        (host, port), *_ = cluster_nodes(url)[0]
        return redis.RedisCluster(host=host, port=port)
    return redis.Redis.from_url(url)


async def test_keys_of_a_torrent_share_one_slot_and_carry_ttls(
        redis_store: RedisPeerStore, store_url: str) -> None:
    await join(redis_store, [v4(1), v6(1)])
    await join(redis_store, [v4(2), v6(2)], seeder=True)
    await redis_store.announce(TORRENT, v4(2), Event.COMPLETED, True, 0, T0)
    keys = swarm_keys(redis_store.prefix, TORRENT)
    everything = (keys.s4, keys.l4, keys.s6, keys.l6, keys.r4, keys.r6, keys.t4, keys.t6, keys.dl)
    assert len({key_slot(k) for k in everything}) == 1
    assert all(info_hash_of_key(redis_store.prefix, k) == TORRENT for k in everything)
    client = sync_client(store_url)
    try:
        assert client.zrange(keys.l4, 0, -1, withscores=True) == [(v4(1).compact(), T0 + PEER_TTL)]
        assert client.zrange(keys.s6, 0, -1) == [v6(2).compact()]
        assert peer_id_of(client.hget(keys.r4, v4(1).compact())) == v4(1).peer_id
        for key in (keys.s4, keys.l4, keys.s6, keys.l6, keys.r4, keys.r6):
            assert PEER_TTL * 1000 <= client.pttl(key) <= (PEER_TTL + 2) * 1000
        assert client.pttl(keys.dl) > (PEER_TTL + 2) * 1000
    finally:
        client.close()


async def test_expired_peers_leave_no_peer_id_behind(redis_store: RedisPeerStore,
                                                     store_url: str) -> None:
    await join(redis_store, [v4(n) for n in range(5)])
    await redis_store.announce(TORRENT, v4(9), Event.STARTED, False, 0, T0 + PEER_TTL)
    client = sync_client(store_url)
    try:
        assert client.hkeys(swarm_keys(redis_store.prefix, TORRENT).r4) == [v4(9).compact()]
    finally:
        client.close()


async def test_compact_path_reads_no_peer_ids(redis_store: RedisPeerStore,
                                              new_store: StoreFactory, store_url: str) -> None:
    await join(redis_store, [v4(1), v4(2)])
    lean = await redis_store.announce(TORRENT, v4(3), Event.STARTED, False, 50, T0,
                                      peer_ids=False)
    assert endpoints(lean) == {v4(1).endpoint, v4(2).endpoint}
    assert {p.peer_id for p in lean.peers} == {b""}
    without = await new_store(peer_ids=False)
    await join(without, [v4(1)], info_hash=OTHER)
    answer = await without.announce(OTHER, v4(2), Event.STARTED, False, 50, T0)
    assert [(p.endpoint, p.peer_id) for p in answer.peers] == [(v4(1).endpoint, b"")]
    client = sync_client(store_url)
    try:
        assert client.exists(swarm_keys(redis_store.prefix, OTHER).r4) == 0
    finally:
        client.close()


@pytest.mark.parametrize("batch", [True, False])
async def test_scripts_are_reloaded_after_a_script_flush(new_store: StoreFactory, store_url: str,
                                                         batch: bool) -> None:
    store = await new_store(batch=batch)
    await join(store, [v4(1)])
    client = sync_client(store_url)
    try:
        client.script_flush()  # a cluster client sends it to every primary
    finally:
        client.close()
    answers = await asyncio.gather(*(store.announce(TORRENT, v4(n), Event.STARTED, False, 50, T0)
                                     for n in (2, 3)))
    assert all(a.stats.incomplete >= 2 for a in answers)
    assert await store.scrape([TORRENT], T0) == [SwarmStats(0, 3, 0)]


async def test_announces_of_one_tick_share_one_pipeline(redis_store: RedisPeerStore) -> None:
    sent: list[int] = []
    original = redis_store._pipeline

    async def counting(calls):  # type: ignore[no-untyped-def]
        sent.append(len(calls))
        return await original(calls)

    redis_store._pipeline = counting  # type: ignore[method-assign]
    hashes = [bytes([n]) * 20 for n in range(40)]
    answers = await asyncio.gather(*(
        redis_store.announce(h, v4(n), Event.STARTED, n % 2 == 0, 50, T0)
        for n, h in enumerate(hashes)))
    assert sent == [40]
    assert [a.stats for a in answers] == [SwarmStats(1, 0, 0) if n % 2 == 0 else
                                          SwarmStats(0, 1, 0) for n in range(40)]
    again = await asyncio.gather(*(
        redis_store.announce(hashes[0], v4(100 + n), Event.STARTED, False, 50, T0)
        for n in range(10)))
    assert sorted(a.stats.incomplete for a in again) == list(range(1, 11))
    assert all(a.stats.complete == 1 for a in again)


def test_store_urls_pick_the_store(redis_url: str, redis_cluster_url: str) -> None:
    single = open_store(Settings(store=redis_url))
    assert isinstance(single, RedisPeerStore) and not single.cluster
    cluster = open_store(Settings(store=redis_cluster_url))
    assert isinstance(cluster, RedisPeerStore) and cluster.cluster
    tls = open_redis_store("rediss://:s%40cret@cache.example:6380/2", 60)
    kwargs = tls.client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == (
        "cache.example", 6380, 2, "s@cret")
    assert tls.client.connection_pool.connection_class.__name__ == "SSLConnection"
    assert cluster_nodes("rediss+cluster://u:p%2F@a:7000,[::1]:7001,b") == (
        [("a", 7000), ("::1", 7001), ("b", 6379)], "u", "p/", True)
    with pytest.raises(ValueError, match="unknown store URL"):
        open_store(Settings(store="mongodb://x"))


async def test_unreachable_redis_raises_store_unavailable_quickly() -> None:
    with __import__("socket").socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = open_redis_store(f"redis://127.0.0.1:{port}/0", PEER_TTL, timeout=0.25)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.start()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.announce(TORRENT, v4(1), Event.STARTED, False, 50, T0)
    with pytest.raises(StoreUnavailable):
        await store.scrape([TORRENT], T0)
    await store.close()
    assert time.monotonic() - started < 2


async def test_stalled_redis_raises_store_unavailable_within_the_timeout(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "stalled")
    store = open_redis_store(server.url, PEER_TTL, timeout=0.2)
    try:
        await store.start()
        await join(store, [v4(1)])
        os.kill(server.process.pid, signal.SIGSTOP)  # the server we started, by its PID
        try:
            calls = (lambda: store.announce(TORRENT, v4(2), Event.STARTED, False, 50, T0),
                     lambda: store.scrape([TORRENT], T0), store.ping)
            for call in calls:
                started = time.monotonic()
                with pytest.raises(StoreUnavailable, match="within 0.2s"):
                    await call()
                assert time.monotonic() - started < 1
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        answer = await store.announce(TORRENT, v4(3), Event.STARTED, False, 50, T0)
        assert v4(1).endpoint in endpoints(answer)
    finally:
        await store.close()
        stop_process(server.process)


def test_v6_peer_round_trips_through_the_compact_string() -> None:
    from services.core.model import Family
    from services.stores.redis import _peers

    peers = [v6(1, port=1), v6(2, port=65535)]
    raw = b"".join(p.compact() for p in peers)
    assert _peers(raw, Family.IPV6, [peer_record(b"x" * 20, (7, "eu", "n1")), None]) == (
        Peer(peers[0].ip, 1, b"x" * 20), Peer(peers[1].ip, 65535, b""))


async def test_more_expired_peers_than_one_batch_are_never_counted_or_returned(
        redis_store: RedisPeerStore) -> None:
    crowd = [v4(n) for n in range(1100)]
    await asyncio.gather(*(redis_store.announce(TORRENT, p, Event.STARTED, False, 0, T0)
                           for p in crowd))
    await join(redis_store, [v4(5000)], now=T0 + 50)
    later = T0 + PEER_TTL
    first = await redis_store.announce(TORRENT, v4(5001), Event.STARTED, False, 50, later)
    assert first.stats == SwarmStats(0, 2, 0)
    assert endpoints(first) == {v4(5000).endpoint}
    second = await redis_store.announce(TORRENT, v4(5002), Event.STARTED, False, 50, later)
    assert second.stats == SwarmStats(0, 3, 0)
    assert endpoints(second) == {v4(5000).endpoint, v4(5001).endpoint}


async def test_tombstones_live_in_their_own_keys_until_forgotten(
        redis_store: RedisPeerStore, store_url: str) -> None:
    version = (int(T0 * 1000) << 16, "eu", "n1")
    await redis_store.announce(TORRENT, v4(1), Event.STARTED, False, 0, T0, version)
    await redis_store.announce(TORRENT, v4(1), Event.STOPPED, False, 0, T0 + 1,
                               (version[0] + 1, "eu", "n1"))
    keys = swarm_keys(redis_store.prefix, TORRENT)
    client = sync_client(store_url)
    try:
        assert client.zrange(keys.t4, 0, -1, withscores=True) == [
            (v4(1).compact(), T0 + 1 + redis_store.tombstone_ttl)]
        assert client.exists(keys.l4) == 0 and client.hexists(keys.r4, v4(1).compact())
        assert client.pttl(keys.t4) > redis_store.tombstone_ttl * 1000
        assert client.pttl(keys.r4) > redis_store.tombstone_ttl * 1000
        assert await redis_store.collect_garbage(T0 + 1 + redis_store.tombstone_ttl) == 0
        assert client.exists(keys.t4, keys.r4) == 0
    finally:
        client.close()


async def test_many_merged_events_across_slots(redis_store: RedisPeerStore) -> None:
    from .test_peer_store import merged

    hashes = [bytes([n]) * 20 for n in range(50)]
    events = [merged(v4(n), Event.STARTED, T0, seeder=n % 3 == 0, info_hash=h)
              for h in hashes for n in range(13)]
    assert len(events) > 500  # more than one pipeline
    assert await redis_store.apply(events, T0) == len(events)
    assert await redis_store.scrape(hashes, T0) == [SwarmStats(5, 8, 0)] * 50
