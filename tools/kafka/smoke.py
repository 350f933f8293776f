"""End-to-end smoke check of a local Kafka broker with aiokafka.

Usage: .venv/bin/python tools/kafka/smoke.py 127.0.0.1:PORT

Checks, against the real broker:
  * AIOKafkaAdminClient: describe_cluster, create_topics (2 partitions), list_topics,
    describe_configs (prints the effective small-box broker settings);
  * AIOKafkaProducer with acks="all", enable_idempotence=True (explicit timestamps);
  * AIOKafkaConsumer with a group_id: consume, commit, stop; a new consumer in the same
    group resumes exactly at the committed offsets (whole-position and explicit commits);
  * offsets_for_times, beginning_offsets, end_offsets;
  * delete_topics at the end.
Exits non-zero (AssertionError / exception) on any mismatch. Uses a fresh, uniquely
named topic and group, so it can run against a broker that tests are also using.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

TIMEOUT_S = 30.0


def log(msg: str) -> None:
    print(f"smoke: {msg}", flush=True)


async def consume(consumer: AIOKafkaConsumer, n: int) -> list:
    """Return exactly n records (fails if fewer arrive within TIMEOUT_S)."""
    out: list = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(out) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"got {len(out)} of {n} records: {[(r.partition, r.offset) for r in out]}"
        batches = await consumer.getmany(timeout_ms=500)
        for recs in batches.values():
            out.extend(recs)
    return out


async def assert_nothing_more(consumer: AIOKafkaConsumer) -> None:
    batches = await consumer.getmany(timeout_ms=1000)
    extra = [(r.partition, r.offset) for recs in batches.values() for r in recs]
    assert not extra, f"unexpected extra records {extra}"


def group_consumer(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def main(bootstrap: str) -> None:
    t_start = time.monotonic()
    topic = f"smoke-{uuid.uuid4().hex[:12]}"
    group = f"smoke-group-{uuid.uuid4().hex[:12]}"
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)

    # --- admin -----------------------------------------------------------------------
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        log(f"cluster {cluster['cluster_id']} brokers {cluster['brokers']}")
        assert len(cluster["brokers"]) == 1
        broker_id = cluster["brokers"][0]["node_id"]

        wanted = {"log.segment.bytes", "log.cleaner.dedupe.buffer.size",
                  "offsets.topic.num.partitions", "auto.create.topics.enable",
                  "share.coordinator.state.topic.replication.factor"}
        resp = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.BROKER, str(broker_id))])
        entries = {}
        for res in resp[0].to_object()["resources"]:
            for e in res["config_entries"]:
                # aiokafka's DescribeConfigsResponse schema names the field "config_names"
                name = e.get("config_name", e.get("config_names"))
                entries[name] = e["config_value"]
        got = {k: entries.get(k) for k in sorted(wanted)}
        log(f"broker configs {got}")
        assert got["log.segment.bytes"] == "16777216", got
        assert got["log.cleaner.dedupe.buffer.size"] == "33554432", got
        assert got["auto.create.topics.enable"] == "false", got

        await admin.create_topics(
            [NewTopic(name=topic, num_partitions=2, replication_factor=1)])
        deadline = time.monotonic() + TIMEOUT_S
        while topic not in await admin.list_topics():
            assert time.monotonic() < deadline, f"topic {topic} never listed"
            await asyncio.sleep(0.2)
        log(f"created topic {topic} (2 partitions)")
    finally:
        await admin.close()

    # --- produce (acks=all, idempotent), explicit timestamps --------------------------
    base = int(time.time() * 1000) - 600_000   # 10 min ago: inside the broker's bounds
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        # batch 1: i = 0..9, partition i % 2, timestamp base + i s
        for i in range(10):
            md = await producer.send_and_wait(
                topic, f"v{i}".encode(), key=f"k{i}".encode(),
                partition=i % 2, timestamp_ms=base + i * 1000)
            assert (md.partition, md.offset) == (i % 2, i // 2), (i, md)
        log("produced 10 records (acks=all, idempotent)")
    finally:
        await producer.stop()

    # --- consumer A: read all, commit current position --------------------------------
    c = group_consumer(bootstrap, topic, group)
    await c.start()
    try:
        recs = await consume(c, 10)
        assert sorted(r.value for r in recs) == sorted(f"v{i}".encode() for i in range(10))
        for r in recs:
            i = int(r.value[1:])
            assert (r.partition, r.offset, r.timestamp) == (i % 2, i // 2, base + i * 1000), r
        await c.commit()
        assert await c.committed(tp0) == 5 and await c.committed(tp1) == 5
        log("consumer A: read 10, committed {p0: 5, p1: 5}")
    finally:
        await c.stop()

    # batch 2 while no consumer runs: j = 0..5, partition j % 2 -> offsets 5,6,7 each
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for j in range(6):
            await producer.send_and_wait(
                topic, f"w{j}".encode(), partition=j % 2,
                timestamp_ms=base + 100_000 + j * 1000)
    finally:
        await producer.stop()
    log("produced 6 more records")

    # --- consumer B (same group): resumes at 5; commits explicit offsets ---------------
    c = group_consumer(bootstrap, topic, group)
    await c.start()
    try:
        recs = await consume(c, 6)
        got = sorted((r.partition, r.offset, r.value) for r in recs)
        want = sorted((j % 2, 5 + j // 2, f"w{j}".encode()) for j in range(6))
        assert got == want, (got, want)
        await assert_nothing_more(c)
        # pretend only the first new record of partition 0 was processed
        await c.commit({tp0: 6, tp1: 8})
        log("consumer B: resumed at committed offsets, read the 6 new; committed {p0: 6, p1: 8}")
    finally:
        await c.stop()

    # --- consumer C (same group): resumes at p0 offset 6 ------------------------------
    c = group_consumer(bootstrap, topic, group)
    await c.start()
    try:
        recs = await consume(c, 2)
        got = sorted((r.partition, r.offset, r.value) for r in recs)
        assert got == [(0, 6, b"w2"), (0, 7, b"w4")], got
        await assert_nothing_more(c)
        log("consumer C: resumed at explicit committed offset p0=6")
    finally:
        await c.stop()

    # --- offsets_for_times / beginning / end offsets (no group) -----------------------
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    try:
        c.assign([tp0, tp1])
        found = await c.offsets_for_times({tp0: base + 3000, tp1: base + 3000})
        # p0 holds i = 0,2,4,.. (ts base+0, +2 s, +4 s); p1 holds i = 1,3,5,..
        assert found[tp0] is not None and (found[tp0].offset, found[tp0].timestamp) == (2, base + 4000), found
        assert found[tp1] is not None and (found[tp1].offset, found[tp1].timestamp) == (1, base + 3000), found
        later = await c.offsets_for_times({tp0: base + 100_000 + 1, tp1: base + 10_000_000})
        assert later[tp0] is not None and later[tp0].offset == 6, later
        assert later[tp1] is None, later
        assert await c.beginning_offsets([tp0, tp1]) == {tp0: 0, tp1: 0}
        assert await c.end_offsets([tp0, tp1]) == {tp0: 8, tp1: 8}
        # and the time-found offset is seekable
        c.seek(tp0, found[tp0].offset)
        c.pause(tp1)
        recs = await consume(c, 1)
        assert (recs[0].partition, recs[0].offset, recs[0].value) == (0, 2, b"v4"), recs[0]
        log("offsets_for_times / beginning_offsets / end_offsets / seek OK")
    finally:
        await c.stop()

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()
    log(f"OK in {time.monotonic() - t_start:.1f} s")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: smoke.py BOOTSTRAP (e.g. 127.0.0.1:9092)")
    asyncio.run(main(sys.argv[1]))
