"""Emergency mode for a region: the switch an operator throws, and how every node hears it.

In emergency mode a region's nodes ask clients to come back later (a longer interval), answer
from their stale cache when it holds the torrent instead of asking the store, and tighten their
limits (fewer peers per answer, fewer announces in flight before load is shed). `EmergencyPolicy`
says by how much.

The switch travels on two channels, so that nodes hear it within seconds while either Redis or
Kafka is down:

- the region's store flag `emergency` (`PeerStore.set_flag`), which every node polls about
  once a second;
- the compacted Kafka topic `<topic_prefix>.control` (one partition, key = region), which every
  node consumes from its beginning: after compaction that is one record per region, and the
  volume is a few records a day, so reading it whole is cheaper to reason about than seeking.

Both carry the same record, `{"emergency": true|false, "set_at": <unix seconds>, "by": "..."}`.
"Off" is a record too, never a deleted flag: a node compares the newest record of each channel
by `set_at` and the newest wins, so an "off" that reached only Kafka (Redis down) beats an older
"on" still in Redis, and the other way round. A channel that cannot be read keeps the last record
it gave; a flag that vanished (Redis restarted empty) is no news. `set_emergency` writes both
channels and succeeds when at least one took the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from services.announce.fallback import stretched_intervals
from services.settings import Settings
from services.stores.base import PeerStore, StoreUnavailable
from services.stream.topics import TopicError, control_topic, ensure_topics

log = logging.getLogger(__name__)

FLAG = "emergency"
# One partition: every region's switch in one ordered log; compaction keeps the last per region.
CONTROL_TOPIC_PARTITIONS = 1
CONTROL_TOPIC_CONFIGS = {"cleanup.policy": "compact"}


class EmergencyError(RuntimeError):
    """Emergency mode could not be switched on any channel; `report` says what each did."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True, slots=True)
class EmergencyState:
    """One throw of the switch: on or off, when (UNIX seconds, the operator's clock), by whom."""

    emergency: bool
    set_at: float
    by: str = ""

    def encode(self) -> str:
        return json.dumps({"emergency": self.emergency, "set_at": self.set_at, "by": self.by},
                          separators=(",", ":"), sort_keys=True)

    @classmethod
    def decode(cls, raw: str | bytes) -> EmergencyState:
        """The record in a flag or a control message; ValueError if it is not one."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        on, set_at, by = data.get("emergency"), data.get("set_at"), data.get("by", "")
        if not isinstance(on, bool):
            raise ValueError("'emergency' must be true or false")
        if isinstance(set_at, bool) or not isinstance(set_at, (int, float)) \
                or not math.isfinite(set_at):
            raise ValueError("'set_at' must be a number of seconds")
        if not isinstance(by, str):
            raise ValueError("'by' must be a string")
        return cls(on, float(set_at), by)


def newest(*states: EmergencyState | None) -> EmergencyState | None:
    """The record that wins: the latest `set_at`; on a tie "on" (the safe side), then `by`, so
    that every node picks the same whatever the order it heard them in; None if none."""
    known = [s for s in states if s is not None]
    if not known:
        return None
    return max(known, key=lambda s: (s.set_at, s.emergency, s.by))


@dataclass(frozen=True, slots=True)
class EmergencyPolicy:
    """What emergency mode changes on a node (settings `emergency_*`).

    - `interval_factor`: intervals are multiplied by it, but kept below the peer TTL
      (`stretched_interval`), so clients still re-announce before their swarms forget them;
    - `numwant`: cap on peers per answer;
    - `max_inflight`: announces in progress before load is shed with BEP 31 `retry in`;
    - `cache_max_age`: a cached answer at most this old (seconds) is used instead of the store.
    """

    interval_factor: float = 4.0
    numwant: int = 25
    max_inflight: int = 256
    cache_max_age: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings) -> EmergencyPolicy:
        return cls(settings.emergency_interval_factor, settings.emergency_numwant,
                   settings.emergency_max_inflight, settings.emergency_cache_max_age)

    def intervals(self, settings: Settings) -> tuple[int, int]:
        """(interval, min interval) to give clients while in emergency mode."""
        return stretched_intervals(settings.announce_interval, settings.min_announce_interval,
                                   self.interval_factor, settings.effective_peer_ttl)

    def cap_numwant(self, numwant: int) -> int:
        return min(numwant, self.numwant)


def operator() -> str:
    """Who throws the switch, for the record: user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


# -- the switch --------------------------------------------------------------------------------

async def set_emergency(settings: Settings, region: str, on: bool,
                        store: PeerStore | None = None, *, by: str | None = None,
                        timeout: float = 5.0,
                        clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Switch emergency mode of `region` on or off, on both channels at once.

    `store` is the region's store, or None to open `settings.store` (which must then be that
    region's store). Returns a report: the record written and, per channel, "ok", "skipped: ..."
    or "failed: ...". Raises `EmergencyError` (with the report) when no channel took it.
    """
    state = EmergencyState(on, clock(), by if by is not None else operator())
    store_result, kafka_result = await asyncio.gather(
        _write_store(settings, store, state, timeout),
        _write_kafka(settings, region, state, timeout))
    report: dict[str, Any] = {
        "region": region, "emergency": on, "set_at": state.set_at, "by": state.by,
        "channels": {"store": store_result, "kafka": kafka_result},
    }
    report["ok"] = "ok" in (store_result, kafka_result)
    if not report["ok"]:
        raise EmergencyError(
            f"emergency mode of region {region} was NOT switched {'on' if on else 'off'}: "
            f"store {store_result}; kafka {kafka_result}. Nodes keep their current mode. Make "
            "the region's Redis (--store) or Kafka (--kafka-bootstrap) reachable and run the "
            "command again.", report)
    log.warning("emergency mode of region %s switched %s by %s (store: %s; kafka: %s)", region,
                "on" if on else "off", state.by, store_result, kafka_result)
    return report


async def _write_store(settings: Settings, store: PeerStore | None, state: EmergencyState,
                       timeout: float) -> str:
    own = store is None
    if own:
        if not settings.shared_store:
            return "skipped: memory:// is private to one process (name the region's Redis)"
        from services.stores import open_store

        store = open_store(settings)
    assert store is not None
    try:
        async with asyncio.timeout(timeout):
            if own:
                await store.start()
            await store.set_flag(FLAG, state.encode())
        return "ok"
    except (StoreUnavailable, TimeoutError, OSError) as exc:
        return f"failed: {exc or type(exc).__name__}"
    finally:
        if own:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(store.close(), timeout)


async def _write_kafka(settings: Settings, region: str, state: EmergencyState,
                       timeout: float) -> str:
    if not settings.kafka_bootstrap:
        return "skipped: no kafka_bootstrap"
    topic = control_topic(settings.topic_prefix)
    deadline = time.monotonic() + timeout
    producer: AIOKafkaProducer | None = None
    try:
        await ensure_topics(settings.kafka_bootstrap, [topic],
                            partitions=CONTROL_TOPIC_PARTITIONS, configs=CONTROL_TOPIC_CONFIGS,
                            timeout=timeout)
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                    enable_idempotence=True,
                                    request_timeout_ms=max(1000, int(timeout * 1000)))
        async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
            await producer.start()
            await producer.send_and_wait(topic, state.encode().encode(), key=region.encode())
        return "ok"
    except (TopicError, KafkaError, TimeoutError, OSError) as exc:
        return f"failed: {exc or type(exc).__name__}"
    finally:
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 2)


# -- the node's side ---------------------------------------------------------------------------

ChangeListener = Callable[[bool, EmergencyState | None], None]


class EmergencyWatcher:
    """Follows the region's switch on both channels; `active` says whether the node is in
    emergency mode now.

    `start()` reads the store flag once (so a node started during an emergency knows at once
    when Redis answers), then polls it every `poll_interval` seconds and follows the control
    topic in the background; neither channel being down fails or delays `start()`. Listeners
    get (active, winning record) whenever `active` flips.
    """

    def __init__(self, settings: Settings, store: PeerStore, *, poll_interval: float = 1.0,
                 on_change: ChangeListener | None = None) -> None:
        self.settings = settings
        self.store = store
        self.region = settings.region
        self.poll_interval = poll_interval
        self.listeners: list[ChangeListener] = [on_change] if on_change else []
        self.channels: dict[str, EmergencyState | None] = {"store": None, "kafka": None}
        self.healthy: dict[str, bool] = {"store": False, "kafka": False}
        self._active = False
        self._tasks: list[asyncio.Task[None]] = []
        self._bad_values: set[str] = set()

    @property
    def active(self) -> bool:
        return self._active

    @property
    def state(self) -> EmergencyState | None:
        """The winning record of the two channels (None: never switched)."""
        return newest(*self.channels.values())

    def offer(self, channel: str, state: EmergencyState) -> None:
        """A record read from `channel`; the newest of the channels decides `active`."""
        self.channels[channel] = state
        winner = self.state
        active = winner is not None and winner.emergency
        if active == self._active:
            return
        self._active = active
        assert winner is not None
        log.warning("region %s %s emergency mode (switched by %s at %s, heard on %s)",
                    self.region, "ENTERED" if active else "left", winner.by or "?",
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(winner.set_at)), channel)
        for listener in self.listeners:
            try:
                listener(active, winner)
            except Exception:
                log.exception("emergency listener failed")

    async def start(self) -> None:
        await self.poll_store()
        self._tasks.append(asyncio.create_task(self._poll_store_forever()))
        if self.settings.kafka_bootstrap:
            self._tasks.append(asyncio.create_task(self._follow_control_topic()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # -- the store flag ----------------------------------------------------------------------

    async def poll_store(self) -> None:
        """Read the flag once; an unreachable store keeps its last record."""
        try:
            async with asyncio.timeout(max(self.poll_interval, 0.5)):
                raw = await self.store.get_flag(FLAG)
        except (StoreUnavailable, TimeoutError, OSError) as exc:
            if self.healthy["store"]:
                log.warning("emergency flag unreadable (%s); keeping the last known mode and "
                            "following the Kafka control topic", exc)
            self.healthy["store"] = False
            return
        self.healthy["store"] = True
        if raw is not None:
            self._take("store", raw)

    async def _poll_store_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.poll_store()
            except Exception:  # a bug of ours must not end the channel for good
                log.exception("reading the emergency flag failed; retrying")

    # -- the control topic -------------------------------------------------------------------

    async def _follow_control_topic(self) -> None:
        topic = control_topic(self.settings.topic_prefix)
        backoff = 0.5
        while True:
            consumer: AIOKafkaConsumer | None = None
            try:
                # Create it compacted here too: a node may start before anyone threw the
                # switch, and a broker that auto-creates topics would make it uncompacted.
                await ensure_topics(self.settings.kafka_bootstrap, [topic],
                                    partitions=CONTROL_TOPIC_PARTITIONS,
                                    configs=CONTROL_TOPIC_CONFIGS, timeout=10)
                consumer = AIOKafkaConsumer(
                    bootstrap_servers=self.settings.kafka_bootstrap, group_id=None,
                    enable_auto_commit=False, auto_offset_reset="earliest",
                    fetch_max_wait_ms=200, metadata_max_age_ms=30_000,
                    client_id=f"meridian-emergency-{self.region}")
                await consumer.start()
                await consumer.topics()  # a full metadata refresh, so the partitions are known
                partitions = [TopicPartition(topic, p)
                              for p in sorted(consumer.partitions_for_topic(topic) or {0})]
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
                self.healthy["kafka"] = True
                backoff = 0.5
                while True:
                    batches = await consumer.getmany(timeout_ms=1000)
                    for records in batches.values():
                        for record in records:
                            self._take_record(record)
            except (KafkaError, TopicError, TimeoutError, OSError) as exc:
                if self.healthy["kafka"] or backoff == 0.5:
                    log.warning("emergency control topic %s unreadable (%s); retrying, and "
                                "following the store flag meanwhile", topic, exc)
                self.healthy["kafka"] = False
            except Exception:  # a bug of ours must not end the channel for good
                log.exception("following the emergency control topic %s failed; retrying", topic)
                self.healthy["kafka"] = False
            finally:
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(consumer.stop(), 5)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    def _take_record(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.key != self.region.encode() or record.value is None:
            return  # another region's switch, or a compaction tombstone
        self._take("kafka", record.value)

    def _take(self, channel: str, raw: str | bytes) -> None:
        try:
            state = EmergencyState.decode(raw)
        except ValueError as exc:
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            if text not in self._bad_values and len(self._bad_values) < 100:
                self._bad_values.add(text)
                log.warning("ignoring emergency record %r on %s: %s (write it with `meridian "
                            "ops emergency on|off`)", text[:200], channel, exc)
            return
        self.offer(channel, state)
