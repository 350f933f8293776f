"""Chaos: under a steady announce load from `meridian loadtest` against a two-region sandbox,
break one part at a time and check that clients keep getting answers, that degraded answers
say so, and that everything heals. Each scenario prints its figures: announces attempted,
failed and answered stale, and the time to heal. Loopback only, bounded in time."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.ops import sandbox
from services.ops.status import compare
from tests.kafka_servers import LocalKafka
from tests.servers import ROOT

pytestmark = pytest.mark.timeout(400)
RATE = 150  # announces per second during a scenario


@pytest.fixture(scope="module")
def regions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = sandbox.up(["eu", "us"], base=Path(tmp_path_factory.mktemp("chaos")),
                       extra_env={"MERIDIAN_REDIS_TIMEOUT": "0.1"})
    try:
        yield state
    finally:
        sandbox.down(state)


class Load:
    """`meridian loadtest` in the background against one region, for a bounded time."""

    def __init__(self, url: str, duration: float, rate: int = RATE) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.loadtest", "--url", url, "--duration",
             str(duration), "--rate", str(rate), "--json", "--no-progress", "--torrents", "200",
             "--timeout", "3"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=True)

    def result(self) -> dict[str, Any]:
        out, err = self.process.communicate(timeout=300)
        assert self.process.returncode == 0, err
        return json.loads(out)


def worker_metrics(base: str, workers: int = 2) -> list[str]:
    """/metrics of every worker of a node: each worker counts for itself, so keep-alive
    connections are opened until each worker (told apart by /health's pid) has answered."""
    texts: dict[int, str] = {}
    clients = []
    deadline = time.monotonic() + 20
    try:
        while len(texts) < workers and time.monotonic() < deadline:
            client = httpx.Client(timeout=5)
            clients.append(client)
            pid = client.get(base + "/health").json()["pid"]
            if pid not in texts:
                texts[pid] = client.get(base + "/metrics").text
    finally:
        for client in clients:
            client.close()
    assert len(texts) == workers, "could not reach every worker"
    return list(texts.values())


def metric_sum(base: str, name: str, **labels: str) -> float:
    total = 0.0
    for text in worker_metrics(base):
        for line in text.splitlines():
            match = re.fullmatch(rf"{name}(\{{.*\}})? (\S+)", line)
            if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
                total += float(match.group(2))
    return total


def base_of(state: dict[str, Any], region: str) -> str:
    return f"http://127.0.0.1:{state['regions'][region]['port']}"


def converge(state: dict[str, Any], timeout: float = 90) -> float:
    """Seconds until every region's store holds the same swarms."""
    started = time.monotonic()
    stores = [r["redis"] for r in state["regions"].values()]
    while not asyncio.run(compare(stores)).equal:
        assert time.monotonic() - started < timeout, "regions did not converge"
        time.sleep(0.5)
    return time.monotonic() - started


def report(name: str, load: dict[str, Any], stale: float, heal: float) -> None:
    print(f"\nchaos {name}: attempted {load['requests']}, failed {load['errors']}, "
          f"answered stale {stale:.0f}, p99 {load['p99_ms']:.1f} ms, healed in {heal:.1f} s")


def during(load_seconds: float, actions: list[tuple[float, Callable[[], None]]],
           url: str) -> dict[str, Any]:
    load = Load(url, load_seconds)
    started = time.monotonic()
    for at, action in actions:
        time.sleep(max(0.0, at - (time.monotonic() - started)))
        action()
    return load.result()


def test_redis_killed_and_restarted_empty(regions: dict[str, Any]) -> None:
    eu = base_of(regions, "eu")
    stale_before = metric_sum(eu, "meridian_stale_answers_total")
    pid = regions["regions"]["eu"]["pids"]["redis"]
    load = during(14, [(3, lambda: os.kill(pid, signal.SIGKILL)),  # the sandbox's own Redis
                       (8, lambda: sandbox.start_role(regions, "eu", "redis"))],
                  regions["regions"]["eu"]["http"])
    stale = metric_sum(eu, "meridian_stale_answers_total") - stale_before
    heal = converge(regions)
    report("redis-lost", load, stale, heal)
    assert load["errors"] == 0 and load["requests"] > RATE * 10
    assert stale > 0


def test_stalled_redis_opens_the_breaker_and_latency_stays_in_budget(
        regions: dict[str, Any]) -> None:
    eu = base_of(regions, "eu")
    pid = regions["regions"]["eu"]["pids"]["redis"]
    opened: list[str] = []

    def pause() -> None:
        os.kill(pid, signal.SIGSTOP)

    def look() -> None:
        # each worker has its own breaker; the ones that served the load must have opened
        states = [max((float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("meridian_store_breaker_state ")), default=0.0)
                  for text in worker_metrics(eu)]
        opened.append("open" if max(states) == 2 else f"states {states}")
        ready = httpx.get(eu + "/ready", timeout=5)
        assert ready.status_code == 503 and "breaker" in ready.json()

    def resume() -> None:
        os.kill(pid, signal.SIGCONT)

    stale_before = metric_sum(eu, "meridian_stale_answers_total")
    try:
        load = during(10, [(2, pause), (5, look), (7, resume)], regions["regions"]["eu"]["http"])
    finally:
        os.kill(pid, signal.SIGCONT)
    stale = metric_sum(eu, "meridian_stale_answers_total") - stale_before
    report("redis-stalled", load, stale, converge(regions))
    assert opened == ["open"]
    assert load["errors"] == 0 and stale > 0
    assert load["p99_ms"] < 500  # the budget: redis_timeout (0.1 s here) plus queueing


def test_kafka_stopped_for_30s_loses_and_duplicates_nothing(regions: dict[str, Any]) -> None:
    eu = base_of(regions, "eu")
    kafka = LocalKafka(Path(regions["kafka_run"]), regions["kafka"])

    def stop() -> None:
        kafka.stop()

    def start() -> None:
        kafka.start_again()
        regions["kafka_pid"] = kafka.pid
        sandbox._save(regions)  # noqa: SLF001 - so `down` stops the new PID

    load = during(40, [(3, stop), (33, start)], regions["regions"]["eu"]["http"])
    deadline = time.monotonic() + 60
    while metric_sum(eu, "meridian_events_spool_bytes") or \
            metric_sum(eu, "meridian_events_queue_depth"):
        assert time.monotonic() < deadline, "the spool did not drain"
        time.sleep(0.5)
    heal = converge(regions)
    report("kafka-down-30s", load, 0, heal)
    assert load["errors"] == 0
    assert metric_sum(eu, "meridian_events_lost_total") == 0
    answered = metric_sum(eu, "meridian_requests_total", action="announce", result="ok")
    assert topic_size(regions["kafka"], "meridian.announces.eu") == answered


def topic_size(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def size() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)
                     or await _partitions(consumer, topic)]
            begin = await consumer.beginning_offsets(parts)
            end = await consumer.end_offsets(parts)
            return sum(end[p] - begin[p] for p in parts)
        finally:
            await consumer.stop()

    return asyncio.run(size())


async def _partitions(consumer: Any, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # noqa: SLF001
    consumer._client.add_topic(topic)  # noqa: SLF001
    await consumer._client.force_metadata_update()  # noqa: SLF001
    return consumer.partitions_for_topic(topic) or set()


def test_paused_reconciler_catches_up(regions: dict[str, Any]) -> None:
    pid = regions["regions"]["us"]["pids"]["reconciler"]
    try:
        load = during(10, [(1, lambda: os.kill(pid, signal.SIGSTOP))],
                      regions["regions"]["eu"]["http"])
    finally:
        os.kill(pid, signal.SIGCONT)
    heal = converge(regions)
    report("reconciler-paused", load, 0, heal)
    assert load["errors"] == 0


def test_one_of_two_announce_processes_killed(regions: dict[str, Any]) -> None:
    eu = base_of(regions, "eu")
    pids = set()
    deadline = time.monotonic() + 20
    while len(pids) < 2 and time.monotonic() < deadline:
        pids.add(httpx.get(eu + "/health", timeout=5).json()["pid"])
    assert len(pids) == 2, "the sandbox node should run two workers"
    victim = sorted(pids)[0]
    answered_by_retry = []

    def kill() -> None:
        os.kill(victim, signal.SIGKILL)  # a worker of the sandbox's node

    def client_that_retries() -> None:
        for _ in range(20):
            try:
                answered_by_retry.append(httpx.get(eu + "/health", timeout=2).json()["pid"])
                return
            except httpx.HTTPError:
                time.sleep(0.1)

    load = during(8, [(2, kill), (2.2, client_that_retries)], regions["regions"]["eu"]["http"])
    report("worker-killed", load, 0, 0)
    assert answered_by_retry and answered_by_retry[0] != victim
    # connections in flight on the killed worker may fail; nothing else does
    assert load["errors"] <= 64
