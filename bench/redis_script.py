"""Benchmark of the Redis peer store: Redis CPU per announce, memory per peer, batching gain.

It starts its own redis-server (Debian's binary, no persistence, 127.0.0.1, a free port) unless
`--url` names one, and stops it by PID when done. Three measurements, each printed as a table:

- cpu: swarms of 10, 1,000 and 10,000 peers are preloaded, then existing peers re-announce
  (numwant 50) in pipelined EVALSHA calls; Redis's own `INFO commandstats` gives
  `usec_per_call` of evalsha: the script's Redis CPU, network and client excluded.
- memory: `--peers` peers over `--torrents` torrents of Zipf popularity (exponent `--zipf`),
  loaded through the real announce script; bytes per peer = used_memory delta / peers.
- batching: `RedisPeerStore.announce` from `--concurrency` concurrent announcers, with and
  without one pipeline per event-loop tick; announces per second at the client.

    .venv/bin/python bench/redis_script.py                       # all three, 200k peers
    .venv/bin/python bench/redis_script.py memory --peers 1000000 --torrents 100000
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from redis import asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.core.model import Event, Peer  # noqa: E402
from services.stores.redis import _SCRIPTS, RedisPeerStore, open_redis_store  # noqa: E402
from tests.redis_servers import redis_server  # noqa: E402

NOW = 1_700_000_000.0
TTL = 3600


@contextmanager
def server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory() as folder, redis_server(Path(folder)) as running:
        yield running.url


# What a store keeps per peer: nothing but the sorted-set member, a record with the version
# (the tracker passes one on every announce, for merging), or a record with peer id and version.
MODES = {"lean": (False, False), "versioned": (False, True), "versioned+ids": (True, True)}


def make_store(mode: str) -> RedisPeerStore:
    """A store used only to build script arguments, exactly as `announce` does."""
    peer_ids, _ = MODES[mode]
    return RedisPeerStore(aioredis.Redis(), TTL, peer_ids=peer_ids)


def announce_args(store: RedisPeerStore, mode: str, info_hash: bytes, member: bytes,
                  seeder: bool, numwant: int, now: float, want_ids: bool = False,
                  event: Event = Event.UPDATE) -> list[object]:
    """EVALSHA arguments (after the SHA) of one announce."""
    peer = Peer(member[:-2], int.from_bytes(member[-2:], "big"), random.randbytes(20))
    version = (int(now * 1000) << 16, "eu-west", "node-01") if MODES[mode][1] else None
    keys, args = store.announce_command(info_hash, peer, event, seeder, numwant, now, version,
                                        want_ids)
    return [len(keys), *keys, *args]


def load(client: redis.Redis, sha: str, rows: Iterator[list[object]], chunk: int = 2000) -> int:
    n = 0
    pipe = client.pipeline(transaction=False)
    for row in rows:
        pipe.execute_command("EVALSHA", sha, *row)
        n += 1
        if n % chunk == 0:
            pipe.execute()
    pipe.execute()
    return n


def cpu_seconds(client: redis.Redis) -> float:
    """Redis's own CPU time so far (user + system): immune to time spent descheduled."""
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def evalsha_usec(client: redis.Redis) -> float:
    stats = client.info("commandstats")
    return float(stats["cmdstat_evalsha"]["usec_per_call"])


def bench_cpu(url: str, sizes: list[int], calls: int, seeder_share: float) -> None:
    client = redis.Redis.from_url(url)
    sha = client.script_load(dict(_SCRIPTS)["announce"])
    print(f"\nRedis CPU per announce, {calls} re-announces, numwant 50, {seeder_share:.0%} "
          "seeders. us/call: INFO commandstats usec_per_call of evalsha (the script's run "
          "time); cpu us: used_cpu_user+sys per call (everything Redis does for it, parsing "
          "and replying included, time spent descheduled excluded)")
    print(f"{'swarm':>8} {'store keeps':>14} {'answer':>10} {'us/call':>8} {'cpu us':>9} "
          f"{'peers back':>11}")
    for size, mode, want_ids in itertools.product(sizes, MODES, (False, True)):
        if want_ids and not MODES[mode][0]:
            continue
        store = make_store(mode)
        client.flushall()
        info_hash = random.randbytes(20)
        swarm = [(random.randbytes(6), random.random() < seeder_share) for _ in range(size)]
        load(client, sha, (announce_args(store, mode, info_hash, m, s, 0, NOW)
                           for m, s in swarm))
        client.config_resetstat()
        cpu_before = cpu_seconds(client)
        got = 0
        pipe = client.pipeline(transaction=False)
        for n in range(calls):
            member, seeder = swarm[n % size]
            pipe.execute_command("EVALSHA", sha, *announce_args(
                store, mode, info_hash, member, seeder, 50, NOW + 1 + n / calls, want_ids))
            if n % 1000 == 999 or n == calls - 1:
                got += sum(len(r[3]) // 6 for r in pipe.execute())
        cpu_per_call = (cpu_seconds(client) - cpu_before) / calls * 1e6
        answer = "+peer ids" if want_ids else "compact"
        print(f"{size:>8} {mode:>14} {answer:>10} {evalsha_usec(client):>8.2f} "
              f"{cpu_per_call:>9.2f} {got / calls:>11.1f}")
    client.close()


def zipf_torrents(torrents: int, exponent: float) -> tuple[list[float], float]:
    cumulative = list(itertools.accumulate(1 / (r + 1) ** exponent for r in range(torrents)))
    return cumulative, cumulative[-1]


def memory_rows(hashes: list[bytes], cumulative: list[float], total: float, peers: int,
                seeder_share: float, v6_share: float, completed_share: float, mode: str,
                used: set[int]) -> Iterator[list[object]]:
    """Announces of `peers` new peers, each to a torrent drawn by popularity (same every run)."""
    rng = random.Random(11)
    store = make_store(mode)
    for _ in range(peers):
        t = bisect.bisect_left(cumulative, rng.random() * total)
        used.add(t)
        member = rng.randbytes(18 if rng.random() < v6_share else 6)
        seeder = rng.random() < seeder_share
        completed = seeder and rng.random() < completed_share
        yield announce_args(store, mode, hashes[t], member, seeder, 0, NOW,
                            event=Event.COMPLETED if completed else Event.UPDATE)


def bench_memory(url: str, peers: int, torrents: int, exponent: float, seeder_share: float,
                 v6_share: float, completed_share: float) -> None:
    client = redis.Redis.from_url(url)
    sha = client.script_load(dict(_SCRIPTS)["announce"])
    rng = random.Random(7)
    cumulative, total = zipf_torrents(torrents, exponent)
    hashes = [rng.randbytes(20) for _ in range(torrents)]
    print(f"\nRedis memory per peer: {peers} peers over {torrents} torrents, Zipf exponent "
          f"{exponent}, {seeder_share:.0%} seeders ({completed_share:.0%} of them announced "
          f"completed), {v6_share:.0%} IPv6")
    print(f"{'store keeps':>14} {'used_memory delta':>18} {'keys':>9} {'torrents used':>14} "
          f"{'bytes/peer':>11}")
    for mode in MODES:
        client.flushall()
        before = int(client.info("memory")["used_memory"])
        used: set[int] = set()
        rows = memory_rows(hashes, cumulative, total, peers, seeder_share, v6_share,
                           completed_share, mode, used)
        load(client, sha, rows)
        delta = int(client.info("memory")["used_memory"]) - before
        print(f"{mode:>14} {delta:>18,} {client.dbsize():>9,} "
              f"{len(used):>14,} {delta / peers:>11.1f}")
    client.close()


async def drive(store: RedisPeerStore, announces: int, concurrency: int
                ) -> tuple[float, float, float, float]:
    info_hashes = [random.randbytes(20) for _ in range(64)]
    latencies: list[float] = []
    counter = iter(range(announces))

    async def announcer() -> None:
        for n in counter:
            peer = Peer(random.randbytes(4), 6881, b"-MR0001-000000000000")
            started = time.perf_counter()
            await store.announce(info_hashes[n % 64], peer, Event.UPDATE, n % 3 == 0, 50,
                                 NOW + n / announces, peer_ids=False)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(announcer() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return (announces / elapsed, latencies[len(latencies) // 2] * 1000,
            latencies[int(len(latencies) * 0.99)] * 1000, latencies[-1] * 1000)


async def timed_announces(url: str, announces: int, concurrency: int, batch: bool
                          ) -> tuple[float, float, float, float]:
    store = open_redis_store(url, TTL, peer_ids=False, batch=batch, timeout=30)
    await store.start()
    try:
        await drive(store, min(2000, announces), concurrency)  # warm the connection pool
        return await drive(store, announces, concurrency)
    finally:
        await store.close()


def bench_batching(url: str, announces: int, concurrencies: list[int]) -> None:
    print(f"\nBatching: {announces} announces (swarms of ~{announces // 64} peers) through "
          "RedisPeerStore.announce, one client process")
    print(f"{'announcers':>10} {'mode':>18} {'announces/s':>12} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8}")
    for concurrency, batch in itertools.product(concurrencies, (False, True)):
        redis.Redis.from_url(url).flushall()

        rate, p50, p99, worst = asyncio.run(timed_announces(url, announces, concurrency, batch))
        mode = "pipeline per tick" if batch else "one EVALSHA each"
        print(f"{concurrency:>10} {mode:>18} {rate:>12,.0f} {p50:>8.2f} {p99:>8.2f} "
              f"{worst:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="*", default=["cpu", "memory", "batching"],
                        choices=["cpu", "memory", "batching"])
    parser.add_argument("--url", help="an existing Redis to use (it is FLUSHED)")
    parser.add_argument("--sizes", default="10,1000,10000", help="swarm sizes for cpu")
    parser.add_argument("--calls", type=int, default=50_000, help="announces per cpu row")
    parser.add_argument("--peers", type=int, default=200_000, help="peers for memory")
    parser.add_argument("--torrents", type=int, default=20_000, help="torrents for memory")
    parser.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent of popularity")
    parser.add_argument("--seeders", type=float, default=0.6, help="share of seeders")
    parser.add_argument("--v6", type=float, default=0.1, help="share of IPv6 peers (memory)")
    parser.add_argument("--completed", type=float, default=0.2,
                        help="share of seeders whose announce is `completed` (memory)")
    parser.add_argument("--announces", type=int, default=20_000, help="announces for batching")
    parser.add_argument("--concurrency", default="16,256",
                        help="concurrent announcers for batching, comma-separated")
    args = parser.parse_args()
    random.seed(1)
    with server(args.url) as url:
        print(f"Redis at {url}: {redis.Redis.from_url(url).info('server')['redis_version']}")
        if "cpu" in args.what:
            bench_cpu(url, [int(s) for s in args.sizes.split(",")], args.calls, args.seeders)
        if "memory" in args.what:
            bench_memory(url, args.peers, args.torrents, args.zipf, args.seeders, args.v6,
                         args.completed)
        if "batching" in args.what:
            bench_batching(url, args.announces, [int(c) for c in args.concurrency.split(",")])


if __name__ == "__main__":
    main()
