"""The consume-merge-commit loop over the other regions' announce topics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from services.core.events import AnnounceEvent, EventDecodeError, decode
from services.core.hlc import physical_ms
from services.settings import Settings
from services.stores.base import PeerStore, StoreUnavailable
from services.stream.topics import RESERVED_SUFFIXES

from .metrics import ReconcilerMetrics

log = logging.getLogger(__name__)


def other_regions_pattern(settings: Settings) -> str:
    """Every region's topic but this region's own (and not the dead letters): regions added
    later are picked up by themselves."""
    prefix = re.escape(settings.topic_prefix + ".")
    skip = "|".join(re.escape(name) for name in (settings.region, *RESERVED_SUFFIXES))
    return rf"^{prefix}(?!(?:{skip})$)[a-z0-9-]+$"


def decode_batch(records: list[ConsumerRecord[bytes, bytes]]
                 ) -> tuple[list[AnnounceEvent], list[tuple[ConsumerRecord[bytes, bytes], str]]]:
    events, bad = [], []
    for record in records:
        try:
            events.append(decode(record.value or b""))
        except EventDecodeError as exc:
            bad.append((record, str(exc)))
    return events, bad


async def apply_until_stored(store: PeerStore, events: list[AnnounceEvent],
                             metrics: ReconcilerMetrics, clock: Callable[[], float],
                             stopping: asyncio.Event) -> int:
    """Merge `events`, retrying while the store is down; nothing is skipped."""
    backoff = 0.1
    while True:
        try:
            return await store.apply(events, clock())
        except StoreUnavailable as exc:
            metrics.store_errors.inc()
            log.warning("store unavailable while merging %d events (%s); retrying",
                        len(events), exc)
            if stopping.is_set():
                raise
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


class Reconciler:
    def __init__(self, settings: Settings, store: PeerStore, metrics: ReconcilerMetrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.stopping = asyncio.Event()
        self.group = f"meridian-reconciler-{settings.region}"

    async def run(self) -> None:
        """Consume until `stop()`; every committed offset has been merged first."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, group_id=self.group,
            enable_auto_commit=False, auto_offset_reset="earliest",
            metadata_max_age_ms=5000, max_poll_records=self.settings.reconcile_batch)
        dead_letters = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap,
                                        acks="all", enable_idempotence=True)
        await _start_retrying(consumer.start, "consumer", self.stopping)
        await _start_retrying(dead_letters.start, "dead-letter producer", self.stopping)
        consumer.subscribe(pattern=other_regions_pattern(self.settings))
        log.info("reconciler for region %s consuming %s", self.settings.region,
                 other_regions_pattern(self.settings))
        next_lag = 0.0
        try:
            while not self.stopping.is_set():
                batches = await consumer.getmany(timeout_ms=200,
                                                 max_records=self.settings.reconcile_batch)
                if batches:
                    await self._merge(consumer, dead_letters, batches)
                if time.monotonic() >= next_lag:
                    await self._record_lag(consumer)
                    next_lag = time.monotonic() + 1.0
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await dead_letters.stop()

    async def _merge(self, consumer: AIOKafkaConsumer, dead_letters: AIOKafkaProducer,
                     batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        records = [r for rs in batches.values() for r in rs]
        events, bad = decode_batch(records)
        for record, reason in bad:
            await dead_letters.send_and_wait(
                self.settings.dead_letter_topic, record.value, key=record.key,
                headers=[("reason", reason.encode()), ("topic", record.topic.encode()),
                         ("partition", str(record.partition).encode()),
                         ("offset", str(record.offset).encode())])
            self.metrics.rejected.inc()
            log.warning("event at %s/%d@%d sent to %s: %s", record.topic, record.partition,
                        record.offset, self.settings.dead_letter_topic, reason)
        if events:
            won = await apply_until_stored(self.store, events, self.metrics, self.clock,
                                           self.stopping)
            self.metrics.won.inc(won)
            now_ms = self.clock() * 1000
            for event in events:
                self.metrics.merged.labels(event.region).inc()
                self.metrics.delay.observe(max(0.0, (now_ms - physical_ms(event.hlc)) / 1000))
        await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batches.items()})

    async def _record_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            with contextlib.suppress(Exception):
                position = await consumer.position(tp)
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(highwater - position)

    def stop(self) -> None:
        self.stopping.set()


async def _start_retrying(start: Callable[[], object], what: str, stopping: asyncio.Event
                          ) -> None:
    """Start a Kafka client, retrying while the broker is unreachable."""
    delay = 0.5
    while True:
        try:
            await start()  # type: ignore[misc]
            return
        except Exception as exc:
            if stopping.is_set():
                raise
            log.warning("cannot start Kafka %s (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
