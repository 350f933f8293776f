#!/usr/bin/env python3
"""Reconciler benchmarks (issue 4): merge throughput and cross-region delay, on loopback.

  throughput: N events of one region are produced into Kafka first, then ONE reconciler
              process-equivalent (the same Reconciler class, in this process) of another region
              merges them into a store; events/s = N / time to merge them all. Memory and Redis
              stores.
  delay:      a two-region sandbox (Kafka, Redis, announce node, reconciler per region); a
              steady `meridian loadtest` against eu at --rate; the us reconciler's histogram of
              event time to merge time gives p50 and p99 (bucket-interpolated).

Bounded in count and time; everything started is stopped by PID. Prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaProducer  # noqa: E402

from services.core.events import AnnounceEvent  # noqa: E402
from services.core.hlc import from_seconds  # noqa: E402
from services.core.model import Event  # noqa: E402
from services.ops import local, sandbox  # noqa: E402
from services.reconciler.consumer import Reconciler  # noqa: E402
from services.reconciler.metrics import ReconcilerMetrics  # noqa: E402
from services.settings import Settings  # noqa: E402
from services.stores import open_store  # noqa: E402
from services.stream.topics import ensure_topics  # noqa: E402


def events(n: int, region: str, torrents: int) -> list[AnnounceEvent]:
    now = time.time()
    hashes = [os.urandom(20) for _ in range(torrents)]
    kinds = [Event.STARTED, Event.UPDATE, Event.UPDATE, Event.COMPLETED, Event.STOPPED]
    return [AnnounceEvent(region=region, node="bench", hlc=from_seconds(now) + i,
                          info_hash=hashes[i % torrents], ip=(i % 60000 + 1).to_bytes(4, "big"),
                          port=1 + i % 50000, peer_id=b"p" * 20, kind=kinds[i % len(kinds)],
                          seeder=i % 3 == 0, expires_ms=int((now + 3600) * 1000))
            for i in range(n)]


async def produce(bootstrap: str, topic: str, batch: list[AnnounceEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=1 << 20)
    await producer.start()
    try:
        futures = [await producer.send(topic, e.encode(), key=e.info_hash) for e in batch]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def merge_all(settings: Settings, expected: int, timeout: float) -> float:
    store = open_store(settings)
    await store.start()
    metrics = ReconcilerMetrics()
    reconciler = Reconciler(settings, store, metrics)
    task = asyncio.create_task(reconciler.run())
    started = time.perf_counter()
    first = None
    try:
        while True:
            merged = sum(s.value for m in metrics.merged.collect() for s in m.samples
                         if s.name.endswith("_total"))
            if merged and first is None:
                first = time.perf_counter()
            if merged >= expected:
                return time.perf_counter() - (first or started)
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"merged {merged} of {expected} in {timeout}s")
            await asyncio.sleep(0.01)
    finally:
        reconciler.stop()
        await task
        await store.close()


def throughput(args: argparse.Namespace) -> list[tuple[str, str]]:
    rows = []
    bootstrap, run, _pid = local.start_kafka()
    redis_dir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    redis_port = local.free_port()
    redis_pid = local.start_redis(redis_port, redis_dir)
    try:
        for store_url in ("memory://", f"redis://127.0.0.1:{redis_port}/0"):
            prefix = f"bench{os.getpid()}{len(rows)}"
            settings = Settings.load(region="eu", kafka_bootstrap=bootstrap, topic_prefix=prefix,
                                     store=store_url, reconcile_batch=args.batch,
                                     node="bench")
            batch = events(args.events, "us", args.torrents)
            asyncio.run(ensure_topics(bootstrap, [settings.topic("us"), settings.dead_letter_topic],
                                      partitions=6))
            asyncio.run(produce(bootstrap, settings.topic("us"), batch))
            seconds = asyncio.run(merge_all(settings, len(batch), args.timeout))
            rows.append((store_url.split(":")[0], f"{len(batch) / seconds:,.0f} events/s "
                         f"({len(batch):,} in {seconds:.2f}s)"))
    finally:
        local.stop_pid(redis_pid)
        local.stop_kafka(run)
    return rows


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Quantile from cumulative (upper bound, count) buckets, linear inside a bucket."""
    total = buckets[-1][1]
    target = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= target:
            if bound == float("inf"):
                return lower_bound
            share = (target - lower_count) / max(count - lower_count, 1e-9)
            return lower_bound + share * (bound - lower_bound)
        lower_bound, lower_count = bound, count
    return lower_bound


def delay(args: argparse.Namespace) -> list[tuple[str, str]]:
    base = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    state = sandbox.up(["eu", "us"], base=base)
    try:
        eu = state["regions"]["eu"]["http"]
        run = subprocess.run(
            [sys.executable, "-m", "services.loadtest", "--url", eu, "--duration",
             str(args.duration), "--rate", str(args.rate), "--json", "--no-progress",
             "--torrents", "2000"], capture_output=True, text=True, cwd=ROOT,
            timeout=args.duration + 60)
        load = json.loads(run.stdout)
        time.sleep(3)  # let the last events arrive
        text = urllib.request.urlopen(state["regions"]["us"]["reconciler_metrics"]).read().decode()
        buckets = []
        for line in text.splitlines():
            if line.startswith("meridian_reconciler_delay_seconds_bucket"):
                bound = line.split('le="', 1)[1].split('"', 1)[0]
                buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
        buckets.sort()
        return [("announces sent to eu", f"{load.get('requests_per_second', 0):,.0f}/s for "
                 f"{args.duration}s (errors {load.get('errors')})"),
                ("events merged in us", f"{buckets[-1][1]:,.0f}"),
                ("delay p50", f"{quantile(buckets, 0.5) * 1000:.0f} ms"),
                ("delay p99", f"{quantile(buckets, 0.99) * 1000:.0f} ms")]
    finally:
        sandbox.down(state)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--events", type=int, default=100_000)
    t.add_argument("--torrents", type=int, default=5_000)
    t.add_argument("--batch", type=int, default=5_000)
    t.add_argument("--timeout", type=float, default=300)
    d = sub.add_parser("delay")
    d.add_argument("--rate", type=int, default=500, help="announces per second to eu")
    d.add_argument("--duration", type=int, default=20)
    args = parser.parse_args()
    rows = throughput(args) if args.what == "throughput" else delay(args)
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
