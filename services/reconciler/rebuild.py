"""Rebuild a region's store from Kafka after it came back empty.

Every region's topic, this region's own included, is replayed from "now minus the peer TTL"
(Kafka's offsets-for-times) up to the end offsets seen at the start, through the same merge as
live reconciliation. Events older than that window could only describe expired peers. Progress
goes to a callback, which the CLI draws as a bar. The store's "rebuilding" flag is set
meanwhile, so every announce node's /ready says so; "populated" is set when done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.settings import Settings
from services.stores.base import PeerStore
from services.stream.topics import region_of_topic

from .consumer import apply_until_stored, decode_batch
from .metrics import ReconcilerMetrics

log = logging.getLogger(__name__)
POPULATED, REBUILDING = "populated", "rebuilding"
Progress = Callable[[int, int], None]  # (replayed, total)


async def _region_partitions(settings: Settings) -> list[TopicPartition]:
    """Every partition of every region's announce topic (dead letters excluded)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    return sorted(TopicPartition(t["topic"], p["partition"]) for t in described
                  if region_of_topic(t["topic"], settings.topic_prefix) is not None
                  for p in t["partitions"])


async def needs_rebuild(store: PeerStore) -> bool:
    """An empty store (restarted, flushed, replaced) has lost its "populated" flag."""
    return await store.get_flag(POPULATED) is None


async def rebuild(settings: Settings, store: PeerStore, metrics: ReconcilerMetrics,
                  progress: Progress | None = None, clock: Callable[[], float] = time.time,
                  stopping: asyncio.Event | None = None) -> int:
    """Replay the last peer-TTL of every region's events into `store`; return events merged."""
    stopping = stopping or asyncio.Event()
    metrics.rebuilds.inc()
    await store.set_flag(REBUILDING, "1", ttl=300)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    merged = 0
    try:
        partitions = await _region_partitions(settings)
        topics = sorted({tp.topic for tp in partitions})
        if not partitions:
            log.info("rebuild: no announce topics yet; nothing to replay")
        else:
            consumer.assign(partitions)
            since_ms = int((clock() - settings.effective_peer_ttl) * 1000)
            starts = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
            ends = await consumer.end_offsets(partitions)
            todo = {}
            for tp in partitions:
                found = starts.get(tp)
                start = found.offset if found is not None else ends[tp]
                if start < ends[tp]:
                    consumer.seek(tp, start)
                    todo[tp] = (start, ends[tp])
            total = sum(end - start for start, end in todo.values())
            log.info("rebuild: replaying %d events from %d partitions of %s", total, len(todo),
                     ", ".join(topics))
            if todo:
                consumer.pause(*(tp for tp in partitions if tp not in todo))
            replayed = 0
            while todo and not stopping.is_set():
                batches = await consumer.getmany(timeout_ms=500,
                                                 max_records=settings.reconcile_batch)
                records = []
                for tp, rs in batches.items():
                    if tp not in todo:
                        continue
                    end = todo[tp][1]
                    records += [r for r in rs if r.offset < end]
                    if rs and rs[-1].offset + 1 >= end:
                        del todo[tp]
                        consumer.pause(tp)
                events, bad = decode_batch(records)
                if bad:
                    log.warning("rebuild: skipped %d undecodable events (the live "
                                "reconciler sends them to the dead-letter topic)", len(bad))
                if events:
                    await apply_until_stored(store, events, metrics, clock, stopping)
                replayed += len(records)
                merged += len(events)
                metrics.rebuild_events.set(max(0, total - replayed))
                if progress:
                    progress(replayed, total)
        await store.set_flag(POPULATED, str(int(clock())))
    finally:
        await store.set_flag(REBUILDING, None)
        metrics.rebuild_events.set(0)
        await consumer.stop()
    log.info("rebuild: merged %d events", merged)
    return merged
