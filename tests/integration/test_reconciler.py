"""The reconciler against a real Kafka broker: other regions' events are merged into the
store, offsets are committed only after the merge, bad events go to the dead-letter topic,
and a rebuild replays every region's topic, this region's own included."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.core.events import AnnounceEvent
from services.core.hlc import from_seconds
from services.core.model import Event, Peer
from services.reconciler.consumer import Reconciler
from services.reconciler.metrics import ReconcilerMetrics
from services.reconciler.rebuild import POPULATED, needs_rebuild, rebuild
from services.settings import Settings
from services.stores.memory import MemoryPeerStore
from services.stream.topics import ensure_topics
from tests.kafka_servers import KafkaBroker

TTL = 600


def settings_for(kafka: KafkaBroker, region: str, prefix: str) -> Settings:
    return Settings.load(region=region, kafka_bootstrap=kafka.bootstrap, topic_prefix=prefix,
                         peer_ttl=TTL, node="test-node")


def event(region: str, info_hash: bytes, port: int, kind: Event, at: float) -> AnnounceEvent:
    return AnnounceEvent(region=region, node="n1", hlc=from_seconds(at), info_hash=info_hash,
                         ip=bytes([10, 0, 0, 1]), port=port, peer_id=b"p" * 20, kind=kind,
                         seeder=False, expires_ms=int((at + TTL) * 1000))


async def produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def peers_of(store: MemoryPeerStore, info_hash: bytes) -> list[int]:
    stats = (await store.scrape([info_hash], time.time()))[0]
    probe = Peer(bytes([10, 9, 9, 9]), 1)
    answer = await store.announce(info_hash, probe, Event.UPDATE, True, 200, time.time())
    await store.announce(info_hash, probe, Event.STOPPED, True, 0, time.time())
    assert stats.incomplete == len(answer.peers)
    return sorted(p.port for p in answer.peers)


async def wait_for(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


def test_merge_commit_and_dead_letters(kafka: KafkaBroker) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    eu = settings_for(kafka, "eu", prefix)

    async def scenario() -> None:
        await ensure_topics(kafka.bootstrap, [eu.topic("eu"), eu.topic("us"), eu.topic("ap"),
                                              eu.dead_letter_topic], partitions=2)
        info_hash, now = os.urandom(20), time.time()
        await produce(kafka.bootstrap, eu.topic("us"), [
            (info_hash, event("us", info_hash, 1001, Event.STARTED, now).encode()),
            (info_hash, b"\x01garbage"),
            (info_hash, event("us", info_hash, 1002, Event.STARTED, now).encode()),
        ])
        await produce(kafka.bootstrap, eu.topic("ap"), [
            (info_hash, event("ap", info_hash, 1003, Event.STARTED, now).encode()),
            (info_hash, event("ap", info_hash, 1002, Event.STOPPED, now + 1).encode()),
        ])
        await produce(kafka.bootstrap, eu.topic("eu"), [  # its own region: not consumed
            (info_hash, event("eu", info_hash, 1004, Event.STARTED, now).encode())])
        store = MemoryPeerStore(TTL)
        metrics = ReconcilerMetrics()
        reconciler = Reconciler(eu, store, metrics)
        task = asyncio.create_task(reconciler.run())

        async def merged() -> bool:
            return await peers_of(store, info_hash) == [1001, 1003] and \
                metrics.rejected._value.get() == 1  # noqa: SLF001

        try:
            await wait_for(merged)
        finally:
            reconciler.stop()
            await task
        # the dead letter kept the bytes and says why
        consumer = AIOKafkaConsumer(eu.dead_letter_topic, bootstrap_servers=kafka.bootstrap,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            records = await consumer.getmany(timeout_ms=5000)
            dead = [r for rs in records.values() for r in rs]
            assert [r.value for r in dead] == [b"\x01garbage"]
            assert b"truncated" in dict(dead[0].headers)["reason"]
        finally:
            await consumer.stop()
        # committed: a new reconciler of the same group starts after what was merged
        again = MemoryPeerStore(TTL)
        second = Reconciler(eu, again, ReconcilerMetrics())
        task = asyncio.create_task(second.run())
        await produce(kafka.bootstrap, eu.topic("us"), [
            (info_hash, event("us", info_hash, 1005, Event.STARTED, now + 2).encode())])
        try:
            await wait_for(lambda: _has(again, info_hash, [1005]))
        finally:
            second.stop()
            await task

    asyncio.run(scenario())


async def _has(store: MemoryPeerStore, info_hash: bytes, ports: list[int]) -> bool:
    return await peers_of(store, info_hash) == ports


def test_rebuild_replays_every_region_including_its_own(kafka: KafkaBroker) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    eu = settings_for(kafka, "eu", prefix)

    async def scenario() -> None:
        await ensure_topics(kafka.bootstrap, [eu.topic("eu"), eu.topic("us")], partitions=3)
        info_hash, now = os.urandom(20), time.time()
        await produce(kafka.bootstrap, eu.topic("eu"), [
            (info_hash, event("eu", info_hash, 2001, Event.STARTED, now).encode()),
            (info_hash, event("eu", info_hash, 2002, Event.STARTED, now).encode())])
        await produce(kafka.bootstrap, eu.topic("us"), [
            (info_hash, event("us", info_hash, 2003, Event.STARTED, now).encode()),
            (info_hash, event("us", info_hash, 2002, Event.STOPPED, now + 1).encode())])
        store = MemoryPeerStore(TTL)
        assert await needs_rebuild(store)
        seen: list[tuple[int, int]] = []
        merged = await rebuild(eu, store, ReconcilerMetrics(),
                               progress=lambda done, total: seen.append((done, total)))
        assert merged == 4
        assert seen[-1] == (4, 4)
        assert await peers_of(store, info_hash) == [2001, 2003]
        assert await store.get_flag(POPULATED) is not None
        assert not await needs_rebuild(store)
        assert await store.get_flag("rebuilding") is None

    asyncio.run(scenario())
