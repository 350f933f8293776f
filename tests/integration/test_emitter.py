"""The event emitter against a real Kafka broker: order per torrent, a broker killed and
restarted mid-stream, Kafka down at start-up, a full spool.

Every scenario reads the whole topic back and compares it with what was emitted: the same
multiset of encoded events (every event exactly once) and, per torrent, the same order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import os
import resource
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from services.core.events import AnnounceEvent
from services.core.hlc import HybridClock
from services.core.model import Event
from services.stream.emitter import EventEmitter
from services.stream.topics import (
    TopicError,
    dead_letter_topic,
    ensure_topics,
    region_of_topic,
    region_topic,
)
from tests.kafka_servers import KafkaBroker
from tests.servers import free_port

pytestmark = pytest.mark.integration

PARTITIONS = 3
KINDS = (Event.STARTED, Event.UPDATE, Event.UPDATE, Event.COMPLETED, Event.STOPPED)


def make_events(torrents: int, count: int) -> list[AnnounceEvent]:
    """`count` events spread over `torrents` torrents; every encoding is distinct (HLC)."""
    clock = HybridClock(time.time)
    hashes = [os.urandom(20) for _ in range(torrents)]
    return [AnnounceEvent(region="test", node="node-1", hlc=clock.tick(),
                          info_hash=hashes[i % torrents], ip=bytes((127, 0, i % 250, 1)),
                          port=1024 + i % 60000, peer_id=b"-MT0001-" + i.to_bytes(12, "big"),
                          kind=KINDS[i % len(KINDS)], seeder=i % 3 == 0,
                          expires_ms=int(time.time() * 1000) + 3_600_000)
            for i in range(count)]


async def new_topic(bootstrap: str) -> str:
    topic = region_topic(f"t{uuid.uuid4().hex[:12]}")
    await ensure_topics(bootstrap, [topic], partitions=PARTITIONS)
    return topic


def new_emitter(bootstrap: str, topic: str, spool: Path, registry: CollectorRegistry,
                **options: object) -> EventEmitter:
    settings: dict[str, object] = {"stall_ms": 500, "reconnect_backoff_ms": (100, 1000),
                                   "connect_timeout_ms": 3000, **options}
    return EventEmitter(bootstrap_servers=bootstrap, topic=topic, spool_path=spool,
                        registry=registry, **settings)  # type: ignore[arg-type]


def metric(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    assert value is not None, f"no metric {name}"
    return value


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


async def consume_all(bootstrap: str, topic: str) -> list[tuple[int, int, bytes, bytes]]:
    """Every record of the topic as (partition, offset, key, value), up to its end offsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        out: list[tuple[int, int, bytes, bytes]] = []
        deadline = time.monotonic() + 30
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            assert time.monotonic() < deadline, f"read {len(out)} records of {sum(end.values())}"
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                out += [(r.partition, r.offset, r.key, r.value) for r in records]
        return out
    finally:
        await consumer.stop()


def assert_exactly_once_in_order(records: list[tuple[int, int, bytes, bytes]],
                                 emitted: list[AnnounceEvent]) -> None:
    values = [event.encode() for event in emitted]
    got = collections.Counter(value for _, _, _, value in records)
    missing = collections.Counter(values) - got
    extra = got - collections.Counter(values)
    assert not missing and not extra, (
        f"{len(records)} records for {len(values)} events: {sum(missing.values())} missing, "
        f"{sum(extra.values())} extra (duplicated or foreign)")
    per_torrent_sent: dict[bytes, list[bytes]] = collections.defaultdict(list)
    for event, value in zip(emitted, values, strict=True):
        per_torrent_sent[event.info_hash].append(value)
    per_torrent_read: dict[bytes, list[bytes]] = collections.defaultdict(list)
    partition_of: dict[bytes, set[int]] = collections.defaultdict(set)
    for partition, _, key, value in sorted(records):
        per_torrent_read[key].append(value)
        partition_of[key].add(partition)
    for info_hash, sent in per_torrent_sent.items():
        assert len(partition_of[info_hash]) == 1, f"torrent {info_hash.hex()} in two partitions"
        assert per_torrent_read[info_hash] == sent, f"torrent {info_hash.hex()} out of order"


class EmitTimings:
    """Each emit() call's wall time, and whether the kernel or the collector interrupted it.

    The bound is ~1 ms per call. A slower call is excused only when the kernel preempted the
    thread meanwhile (an involuntary context switch: on a 2-core box the restarting JVM takes
    the CPU for up to tens of ms) or the garbage collector ran, since then emit() itself was not
    waiting; excused calls must stay rare. A call that waits (disk, lock, network) is slow with
    no preemption, and fails.
    """

    BOUND = 0.001

    def __init__(self) -> None:
        self.calls: list[tuple[float, int, int]] = []  # wall, preemptions, collections

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        switches = resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
        collected = sum(generation["collections"] for generation in gc.get_stats())
        wall = time.perf_counter()
        yield
        wall = time.perf_counter() - wall
        self.calls.append((wall, resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw - switches,
                           sum(g["collections"] for g in gc.get_stats()) - collected))

    def check(self) -> None:
        walls = sorted(call[0] for call in self.calls)
        summary = (f"{len(walls)} calls: p50 {walls[len(walls) // 2] * 1e6:.1f} us, "
                   f"p99 {walls[int(len(walls) * 0.99)] * 1e6:.1f} us, "
                   f"max {walls[-1] * 1e3:.2f} ms")
        slow = [call for call in self.calls if call[0] > self.BOUND]
        waiting = [call for call in slow if not (call[1] or call[2])]
        assert not waiting, f"emit() over {self.BOUND * 1e3:.0f} ms: {waiting[:5]} ({summary})"
        assert len(slow) <= len(self.calls) // 100, f"{len(slow)} slow calls: {summary}"
        print(f"emit(): {summary}; {len(slow)} over 1 ms, all preempted or collected")


def test_events_arrive_once_and_in_order_per_torrent(kafka: KafkaBroker, tmp_path: Path) -> None:
    async def scenario() -> None:
        topic = await new_topic(kafka.bootstrap)
        registry = CollectorRegistry()
        emitter = new_emitter(kafka.bootstrap, topic, tmp_path / "spool", registry)
        events = make_events(torrents=12, count=1500)
        await emitter.start()
        try:
            for i, event in enumerate(events[:1000]):
                emitter.emit(event)
                if i % 100 == 99:
                    await asyncio.sleep(0.005)
            # from another thread (a sync handler, say): handed to the loop, order kept
            await asyncio.to_thread(lambda: [emitter.emit(event) for event in events[1000:]])
        finally:
            await emitter.close(timeout=15)  # close() itself delivers the queue
        assert metric(registry, "meridian_events_sent_total") == len(events)
        assert metric(registry, "meridian_events_spooled_total") == 0
        assert metric(registry, "meridian_events_lost_total") == 0
        assert_exactly_once_in_order(await consume_all(kafka.bootstrap, topic), events)

    asyncio.run(scenario())


@pytest.mark.parametrize("kill", [True, False], ids=["sigkill", "sigterm"])
def test_broker_outage_mid_stream_loses_and_duplicates_nothing(
        kafka_controllable: KafkaBroker, tmp_path: Path, kill: bool,
        caplog: pytest.LogCaptureFixture) -> None:
    broker = kafka_controllable
    caplog.set_level(logging.WARNING, logger="services.stream")

    async def scenario() -> None:
        topic = await new_topic(broker.bootstrap)
        registry = CollectorRegistry()
        emitter = new_emitter(broker.bootstrap, topic, tmp_path / "spool", registry)
        events = make_events(torrents=16, count=2400)
        timings = EmitTimings()

        async def emit_steadily() -> None:  # about 400 events/s for 6 s
            for i, event in enumerate(events):
                with timings.measure():
                    emitter.emit(event)
                if i % 10 == 9:
                    await asyncio.sleep(0.025)

        await emitter.start()
        stopped = False
        try:
            emitting = asyncio.create_task(emit_steadily())
            await asyncio.sleep(1.2)
            assert metric(registry, "meridian_events_sent_total") > 0, "nothing sent before"
            await broker.stop_async(kill=kill)
            stopped = True
            await wait_until(lambda: metric(registry, "meridian_events_spooled_total") > 0,
                             10, "events to be spooled while the broker is down")
            await asyncio.sleep(0.5)
            await broker.start_again_async()
            stopped = False
            await emitting
            assert await emitter.flush(timeout=60), f"not drained: {emitter.stats}"
        finally:
            if stopped:
                await broker.start_again_async()
            await emitter.close(timeout=10)
        assert metric(registry, "meridian_events_replayed_total") > 0
        assert metric(registry, "meridian_events_lost_total") == 0
        assert metric(registry, "meridian_events_sent_total") == len(events)
        assert metric(registry, "meridian_events_spool_bytes") == 0
        assert_exactly_once_in_order(await consume_all(broker.bootstrap, topic), events)
        timings.check()

    asyncio.run(scenario())


def test_kafka_down_at_start_then_delivered_once_it_appears(
        kafka_controllable: KafkaBroker, tmp_path: Path) -> None:
    """Down at start-up, a clean close while still down (all to the spool), a second process
    start on the same spool, then Kafka appears: everything arrives exactly once, in order."""
    broker = kafka_controllable

    async def scenario() -> None:
        topic = await new_topic(broker.bootstrap)
        events = make_events(torrents=6, count=600)
        first, second = events[:300], events[300:]
        await broker.stop_async()
        try:
            registry = CollectorRegistry()
            emitter = new_emitter(broker.bootstrap, topic, tmp_path / "spool", registry)
            started = time.monotonic()
            await emitter.start()
            assert time.monotonic() - started < 0.5, "start() waited for Kafka"
            for event in first:
                emitter.emit(event)
            await wait_until(lambda: metric(registry, "meridian_events_spooled_total") == 300,
                             10, "the first events to be spooled")
            await emitter.close(timeout=2)
            assert metric(registry, "meridian_events_lost_total") == 0
            assert metric(registry, "meridian_events_sent_total") == 0

            registry = CollectorRegistry()
            emitter = new_emitter(broker.bootstrap, topic, tmp_path / "spool", registry)
            await emitter.start()
            for event in second:
                emitter.emit(event)
            await asyncio.sleep(0.3)
        finally:
            await broker.start_again_async()
        try:
            assert await emitter.flush(timeout=60), f"not drained: {emitter.stats}"
        finally:
            await emitter.close(timeout=10)
        assert metric(registry, "meridian_events_sent_total") == len(events)
        assert metric(registry, "meridian_events_replayed_total") == len(events)
        assert metric(registry, "meridian_events_lost_total") == 0
        assert_exactly_once_in_order(await consume_all(broker.bootstrap, topic), events)

    asyncio.run(scenario())


def test_full_spool_counts_lost_events_and_never_raises(tmp_path: Path) -> None:
    """No broker at all (nothing listens on the port): a tiny queue and spool overflow."""

    async def scenario() -> None:
        registry = CollectorRegistry()
        emitter = new_emitter(f"127.0.0.1:{free_port(both=False)}", region_topic("nowhere"),
                              tmp_path / "spool", registry, queue_max=20,
                              spool_max_bytes=4096)
        events = make_events(torrents=3, count=500)
        await emitter.start()
        try:
            for i, event in enumerate(events):
                emitter.emit(event)
                if i % 50 == 49:
                    await asyncio.sleep(0.01)
            # an event the encoder refuses (a node name over 255 bytes) is lost, not raised
            emitter.emit(events[0].model_copy(update={"node": "n" * 300}))
            await asyncio.sleep(0.1)
            lost = metric(registry, "meridian_events_lost_total")
            spooled = metric(registry, "meridian_events_spooled_total")
            depth = metric(registry, "meridian_events_queue_depth")
            assert lost > 0
            assert metric(registry, "meridian_events_sent_total") == 0
            assert depth + spooled + lost == len(events) + 1
            assert 0 < metric(registry, "meridian_events_spool_bytes") <= 4096
        finally:
            await emitter.close(timeout=1)
        lost = metric(registry, "meridian_events_lost_total")
        assert metric(registry, "meridian_events_spooled_total") + lost == len(events) + 1
        emitter.emit(events[0])  # after close: counted, not raised
        assert metric(registry, "meridian_events_lost_total") == lost + 1

    asyncio.run(scenario())


class ScriptedProducer:
    """Stands in for AIOKafkaProducer where a real broker cannot be made to fail on cue: it
    answers each send after `delay` seconds, confirming it or failing it with `fail(key)`."""

    def __init__(self, delivered: list[tuple[bytes, bytes]],
                 fail: Callable[[bytes], Exception | None], delay: float) -> None:
        self.delivered = delivered
        self.fail = fail
        self.delay = delay

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        error = self.fail(key)

        def answer() -> None:
            if error is None:
                self.delivered.append((key, value))
                future.set_result(None)
            else:
                future.set_exception(error)

        asyncio.get_running_loop().call_later(self.delay, answer)
        return future

    async def stop(self) -> None:
        pass


def test_events_kafka_definitely_refused_are_sent_again_first_and_in_order(
        tmp_path: Path) -> None:
    """Sends that fail (the producer's answer, not a timeout), while newer events already wait
    in the spool: the failed events go back to the spool's head, the producer is replaced, and
    in the end every event is delivered once, in order per torrent.

    Producer 1 answers only after the stall limit (so newer events are spooled meanwhile), then
    refuses two torrents. Producer 2 refuses a third torrent (its first replayed batch partly
    fails: acknowledged and requeued in one step). Producer 3 takes everything. A producer that
    refuses a torrent's event refuses its later ones too, as an idempotent producer does: the
    broker refuses a batch whose sequence number skips the failed one.
    """
    from aiokafka.errors import OutOfOrderSequenceNumber

    async def scenario() -> None:
        registry = CollectorRegistry()
        emitter = new_emitter("127.0.0.1:1", region_topic("scripted"), tmp_path / "spool",
                              registry, batch_max=50)
        events = make_events(torrents=8, count=600)
        refused_first = {events[1].info_hash, events[4].info_hash}
        refused_second = events[6].info_hash
        delivered: list[tuple[bytes, bytes]] = []
        producers: list[ScriptedProducer] = []

        async def connect() -> ScriptedProducer:
            scripts = [
                (lambda key: OutOfOrderSequenceNumber() if key in refused_first else None, 0.8),
                (lambda key: OutOfOrderSequenceNumber() if key == refused_second else None, 0.003),
                (lambda key: None, 0.003)]
            fail, delay = scripts[min(len(producers), 2)]
            producers.append(ScriptedProducer(delivered, fail, delay))
            return producers[-1]

        emitter._connect = connect  # type: ignore[method-assign]
        await emitter.start()
        try:
            for i, event in enumerate(events):
                emitter.emit(event)
                if i % 20 == 19:
                    await asyncio.sleep(0.01)
            assert await emitter.flush(timeout=20), f"not drained: {emitter.stats}"
        finally:
            await emitter.close(timeout=5)
        assert len(producers) == 3, "each refusing producer is replaced"
        assert metric(registry, "meridian_events_replayed_total") > 0
        assert metric(registry, "meridian_events_lost_total") == 0
        assert metric(registry, "meridian_events_sent_total") == len(events)
        assert_exactly_once_in_order(
            [(0, n, key, value) for n, (key, value) in enumerate(delivered)], events)

    asyncio.run(scenario())


def test_topic_names_and_idempotent_creation(kafka: KafkaBroker) -> None:
    assert region_topic("eu-west") == "meridian.announces.eu-west"
    assert region_topic("eu-west", prefix="acme.events") == "acme.events.eu-west"
    assert dead_letter_topic() == "meridian.announces.dlq"
    assert region_of_topic("meridian.announces.eu-west") == "eu-west"
    assert region_of_topic(dead_letter_topic()) is None
    assert region_of_topic("other.topic") is None
    for bad in ("dlq", "EU West", ""):
        with pytest.raises(TopicError):
            region_topic(bad)

    async def scenario() -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        topic = region_topic(f"t{uuid.uuid4().hex[:12]}")
        assert await ensure_topics(kafka.bootstrap, [topic], partitions=4) == [topic]
        assert await ensure_topics(kafka.bootstrap, [topic], partitions=4) == []
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            [described] = await admin.describe_topics([topic])
            assert len(described["partitions"]) == 4
        finally:
            await admin.close()
        with pytest.raises(TopicError, match="reachable"):
            await ensure_topics(f"127.0.0.1:{free_port(both=False)}", [topic], partitions=1,
                                timeout=2)

    asyncio.run(scenario())
