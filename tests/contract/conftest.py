"""Fixtures of the store contract suite: each test gets an event loop and a fresh store of
every kind (memory, one Redis, a 3-master Redis Cluster).

pytest-asyncio is not a dependency: `async def` tests here run on the per-test `runner`
(an `asyncio.Runner`), which also starts and closes the stores, so a store's connections live
on the loop that uses them. Redis servers are session-wide and flushed before each test.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from services.stores.base import PeerStore
from services.stores.memory import MemoryPeerStore
from services.stores.redis import RedisPeerStore, open_redis_store
from tests.redis_servers import cluster_redis, single_redis

PEER_TTL = 100
STORE_KINDS = ["memory", "redis", "redis-cluster"]

StoreFactory = Callable[..., Awaitable[PeerStore]]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with single_redis(Path(tmp_path_factory.mktemp("redis"))) as url:
        yield url


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with cluster_redis(Path(tmp_path_factory.mktemp("redis-cluster"))) as url:
        yield url


def flush(url: str) -> None:
    """Empty a test server (every master of a cluster) before a test."""
    if url.split("://", 1)[0].endswith("+cluster"):
        from services.stores.redis import cluster_nodes

        hosts, _, password, _ = cluster_nodes(url)
        client = redis.RedisCluster(host=hosts[0][0], port=hosts[0][1], password=password)
        try:
            client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
        finally:
            client.close()
    else:
        with redis.Redis.from_url(url) as client:
            client.flushall()


@pytest.fixture(autouse=True)
def runner() -> Iterator[asyncio.Runner]:
    """The event loop of one test."""
    with asyncio.Runner() as loop_runner:
        yield loop_runner


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run `async def` tests on the test's own runner."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    loop_runner: asyncio.Runner = pyfuncitem.funcargs["runner"]
    names = inspect.signature(pyfuncitem.obj).parameters
    loop_runner.run(pyfuncitem.obj(**{n: pyfuncitem.funcargs[n] for n in names}))
    return True


@pytest.fixture(params=STORE_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(kind: str, request: pytest.FixtureRequest) -> str | None:
    """The flushed server a Redis store of this kind talks to (None for memory)."""
    if kind == "memory":
        return None
    url = str(request.getfixturevalue("redis_url" if kind == "redis" else "redis_cluster_url"))
    flush(url)
    return url


@pytest.fixture
def new_store(kind: str, store_url: str | None, runner: asyncio.Runner) -> Iterator[StoreFactory]:
    """Build and start stores of this test's kind; all are closed after the test."""
    made: list[PeerStore] = []

    async def make(peer_ttl: float = PEER_TTL, max_peers_per_swarm: int = 100_000,
                   **redis_options: Any) -> PeerStore:
        store: PeerStore
        if store_url is None:
            store = MemoryPeerStore(peer_ttl, max_peers_per_swarm=max_peers_per_swarm)
        else:
            # The suite checks behaviour, not latency: a loaded CI machine must not turn a big
            # pipeline into a timeout. Tests of the timeout itself pass their own.
            redis_options.setdefault("timeout", 5.0)
            store = open_redis_store(store_url, peer_ttl,
                                     max_peers_per_swarm=max_peers_per_swarm, **redis_options)
        await store.start()
        made.append(store)
        return store

    yield make
    for store in made:
        runner.run(store.close())


@pytest.fixture
def store(new_store: StoreFactory, runner: asyncio.Runner) -> PeerStore:
    """A started store with the suite's peer TTL."""
    return runner.run(new_store())


@pytest.fixture
def redis_store(kind: str, store: PeerStore) -> RedisPeerStore:
    """The store as a Redis store, for Redis-only tests (their module narrows `kind`)."""
    assert isinstance(store, RedisPeerStore), kind
    return store
