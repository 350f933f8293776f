"""The announce-event emitter: each answered announce's event to the region's Kafka topic, in
order per torrent, through the local spool while Kafka is away.

Owns the emitter's memory queue, its aiokafka producer, its spool (`services.stream.spool`), the
one background task that moves events between them, and the emitter's Prometheus metrics.

The announce path calls `emit(event)`: synchronous, O(1), never waits and never raises. The
event is encoded and appended to a bounded in-memory queue. When the queue is full, its oldest
events (a small fixed chunk) are written to the spool to make room, so the newest events stay
in memory and the order is kept; when the spool is full too, those events are counted in
`meridian_events_lost_total` (and logged, at most every 10 s). Only that overflow touches the
disk from `emit`: one `write(2)` of a few kilobytes to the page cache, never an fsync.

Order. At any moment the events are in three places, oldest to newest: the flight (at most one
batch handed to the producer and not yet confirmed), the spool, the queue. The background task
keeps it that way: it hands the producer one batch at a time and waits for Kafka's answer
(acks=all) before the next; while the spool holds anything it replays the spool, oldest first,
before it takes anything from the queue; while Kafka is away it moves the queue to the spool's
tail; and events of a batch that Kafka definitely did not take go back to the spool's head.
Events are keyed by info_hash, so a torrent's events share a partition and keep their order.
Requeueing failed events keeps that order because the broker refuses, within one producer, every
batch of a partition after one that failed (its sequence number would skip the failed one): the
failed events of a torrent are always the newest of that torrent in the flight.

Exactly once in the topic, across broker outages:
- The producer is idempotent (a producer id and a sequence number per partition, acks=all), so
  the retries aiokafka makes on its own within one producer session never duplicate: the
  broker drops a batch it already has, also after the broker restarted (it rebuilds producer
  state from its log).
- A batch whose outcome is unknown is never given up on. When Kafka does not confirm the flight
  within `stall_ms`, the emitter does not resend it: it leaves it to the producer, which
  retries it until the broker is back, and meanwhile spools every newer event behind it. So an
  outage of any length, of the broker or the network, produces neither a loss nor a duplicate.
- Only what definitely did not reach the topic is spooled again: events whose `send()` raised
  or was cancelled before aiokafka took them, and events whose future failed with an error.
  After such a failure the producer is replaced, so its sequence numbers start afresh.
- Where a duplicate can still appear (at-least-once, harmless because the reconciler's merge is
  idempotent): `close()` runs out of time while a flight is unconfirmed (its events are spooled
  and sent again by the next start); a partition stays leaderless for longer than
  `request_timeout_ms` after aiokafka sent a batch to it (aiokafka then fails that batch); the
  process dies between Kafka's confirmation of a replayed batch and the spool's cursor write.
- What a crash of the process loses: the memory queue (at most `queue_max` events) and an
  unconfirmed flight. The spool survives it (see its fsync policy for machine crashes).

Kafka down at start-up does not fail `start()`: the node serves announces, events are spooled,
and the task reconnects with exponential backoff. `close()` delivers the queue to Kafka within
its timeout when Kafka is healthy and the spool is empty, and spools whatever remains otherwise,
so a clean shutdown loses nothing; the next start replays it.

`emit` must be called from the event loop's thread for the O(1) promise; a call from another
thread is handed to the loop with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from prometheus_client import CollectorRegistry, Counter, Gauge

from services.core.events import AnnounceEvent

from .spool import FsyncPolicy, Spool, SpoolPosition

log = logging.getLogger(__name__)

Record = tuple[bytes, bytes]  # (key, value): (info_hash, encoded event)

# Broker answers that mean "these bytes will never be accepted": sending them again cannot help.
_POISON = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError,
           CorruptRecordException)
# Events moved from the queue to the spool per overflowing emit(): small, so emit stays O(1).
_SPILL_CHUNK = 64
# While Kafka is away, how often the queue is moved to the spool.
_SPOOL_TICK = 0.02
_LOG_EVERY = 10.0


@dataclass
class _Flight:
    """One batch handed to the producer: the events, then their futures, in the same order."""

    records: list[Record]
    through: SpoolPosition | None  # a replay from the spool: the position after its last event
    started: float
    futures: list[asyncio.Future[Any]] = field(default_factory=list)
    done: asyncio.Future[list[Any]] | None = None
    error: BaseException | None = None  # why the hand-over stopped early, if it did

    @property
    def unsent(self) -> list[Record]:
        """Events the producer never took (the hand-over stopped before them)."""
        return self.records[len(self.futures):]


@dataclass(frozen=True)
class EmitterStats:
    queue_depth: int
    spool_bytes: int
    in_flight: int
    kafka_up: bool


class EventEmitter:
    """Announce events to one Kafka topic, never blocking the announce that made them.

    bootstrap_servers, topic: where the events go (`topics.region_topic(region)`).
    spool_path: this process's spool directory (locked: one process each).
    registry: where the `meridian_events_*` metrics are registered.
    queue_max: events held in memory before the oldest spill to the spool.
    spool_max_bytes: bound on the spool's unconsumed bytes; beyond it events are lost (counted).
    spool_fsync, spool_fsync_interval_ms: the spool's durability policy (see `spool`).
    linger_ms: how long the producer waits to fill a batch (latency against request count).
    batch_max: events per flight (one flight in the producer at a time).
    stall_ms: a flight unconfirmed this long means Kafka is away: newer events are spooled.
    request_timeout_ms: aiokafka's request timeout; also how long a batch may wait for a
        leaderless partition before aiokafka fails it (the one source of duplicates in an outage).
    connect_timeout_ms, reconnect_backoff_ms: one connection attempt's limit; the (first,
        longest) wait between attempts, doubling.
    """

    def __init__(self, *, bootstrap_servers: str, topic: str,
                 spool_path: str | os.PathLike[str], registry: CollectorRegistry,
                 queue_max: int = 10_000, spool_max_bytes: int = 256 << 20,
                 spool_fsync: FsyncPolicy = "interval", spool_fsync_interval_ms: int = 1000,
                 linger_ms: int = 5, batch_max: int = 1000, stall_ms: int = 2000,
                 request_timeout_ms: int = 30_000, connect_timeout_ms: int = 10_000,
                 reconnect_backoff_ms: tuple[int, int] = (200, 5000),
                 client_id: str | None = None) -> None:
        if queue_max < 1 or batch_max < 1:
            raise ValueError("queue_max and batch_max must be at least 1")
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.client_id = client_id or f"meridian-emitter-{os.getpid()}"
        self._queue_max = queue_max
        self._batch_max = batch_max
        self._linger_ms = linger_ms
        self._stall = stall_ms / 1000
        self._request_timeout_ms = request_timeout_ms
        self._connect_timeout = connect_timeout_ms / 1000
        self._backoff_min = reconnect_backoff_ms[0] / 1000
        self._backoff_max = reconnect_backoff_ms[1] / 1000
        self._backoff = self._backoff_min
        # The spool is opened now: events that overflow the queue before start() have a place.
        self._spool = Spool(spool_path, spool_max_bytes, fsync=spool_fsync,
                            fsync_interval_ms=spool_fsync_interval_ms)
        self._queue: deque[Record] = deque()
        self._producer: AIOKafkaProducer | None = None
        # Kafka is known to be away (a connection failed, a flight stalled or failed): newer
        # events go to the spool. Unknown at first: the first connection attempt keeps them in
        # memory, so a normal start spools nothing.
        self._away = False
        self._flight: _Flight | None = None
        self._connecting: asyncio.Task[AIOKafkaProducer] | None = None
        self._next_connect = 0.0
        self._retiring: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._wake_on_emit = False
        self._closing = False
        self._closed = False
        self._closed_event = asyncio.Event()
        self._close_deadline = float("inf")
        self._lost_unlogged = 0
        self._lost_logged_at = -_LOG_EVERY
        self._last_warning: dict[str, float] = {}

        self.queued = Counter("meridian_events_queued",
                              "Announce events accepted into the emitter's memory queue",
                              registry=registry)
        self.sent = Counter("meridian_events_sent",
                            "Announce events confirmed by Kafka (acks=all), replays included",
                            registry=registry)
        self.spooled = Counter("meridian_events_spooled",
                               "Announce events written to the local spool (Kafka away, queue "
                               "full, or sent again after a failed send)", registry=registry)
        self.replayed = Counter("meridian_events_replayed",
                                "Announce events read back from the spool and confirmed by "
                                "Kafka", registry=registry)
        self.lost = Counter("meridian_events_lost",
                            "Announce events dropped: spool full, not encodable, or emitted "
                            "after close", registry=registry)
        spool_bytes = Gauge("meridian_events_spool_bytes",
                            "Bytes of announce events waiting in the spool", registry=registry)
        spool_bytes.set_function(lambda: self._spool.pending_bytes)
        depth = Gauge("meridian_events_queue_depth",
                      "Announce events waiting in the emitter's memory queue",
                      registry=registry)
        depth.set_function(lambda: len(self._queue))
        kafka_up = Gauge("meridian_events_kafka_up",
                         "1 while Kafka takes the emitter's events, 0 while they are spooled",
                         registry=registry)
        kafka_up.set_function(lambda: 1.0 if self.kafka_up else 0.0)

    # -- the announce path ------------------------------------------------------------------

    def emit(self, event: AnnounceEvent) -> None:
        """Queue an event for Kafka. Never waits, never raises."""
        try:
            if self._loop_thread is not None and threading.get_ident() != self._loop_thread:
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self.emit, event)
                return
            if self._closed:
                self._lose(1, "emitted after the emitter closed")
                return
            record = (event.info_hash, event.encode())
            queue = self._queue
            if len(queue) >= self._queue_max:
                self._spill()
            queue.append(record)
            self.queued.inc()
            if self._wake_on_emit:
                self._wake_now()
        except Exception:  # an announce must never fail because of its event
            self._lose(1, "could not be queued (see the exception logged)")
            self._warn("emit", "an announce event could not be queued", exc_info=True)

    def _spill(self) -> None:
        """The queue is full: its oldest events go to the spool, so the newest stay in memory."""
        chunk = [self._queue.popleft() for _ in range(min(_SPILL_CHUNK, len(self._queue)))]
        self._to_spool(chunk, defer_sync=True)

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background task. Never fails because Kafka is unreachable."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if not self._spool.empty:
            log.info("emitter: %d bytes of events wait in the spool %s; they go to Kafka first",
                     self._spool.pending_bytes, self._spool.directory)
        self._task = asyncio.create_task(self._run(), name=f"event-emitter {self.topic}")

    async def close(self, timeout: float = 10.0) -> None:
        """Deliver the queue to Kafka within `timeout` seconds, spool whatever remains, stop.

        Nothing is lost: events Kafka has not confirmed by then are spooled (an unconfirmed
        flight may therefore appear twice in the topic after the next start's replay).
        """
        if self._closing:
            await self._closed_event.wait()  # a second caller waits for the first
            return
        loop = asyncio.get_running_loop()
        self._closing = True
        self._close_deadline = loop.time() + timeout
        self._wake_now()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout + 1.0)
            except TimeoutError:
                self._task.cancel()
            except Exception:
                log.exception("emitter: the background task failed while closing")
            if not self._task.done():
                try:
                    await self._task
                except asyncio.CancelledError:
                    pass
        if self._flight is not None:
            self._abandon_flight()
        if self._connecting is not None:
            self._connecting.cancel()
            try:
                await self._connecting
            except BaseException:  # cancelled or failed: it discarded its producer itself
                pass
            self._connecting = None
        if self._producer is not None:
            self._retire_producer(stop_timeout=max(1.0, self._close_deadline - loop.time()))
        if self._retiring:
            await asyncio.wait(self._retiring, timeout=10.0)
        self._away = True
        # From here on emit() counts events as lost; no await until the queue is spooled.
        self._closed = True
        self._spool_queue()
        try:
            await asyncio.to_thread(self._spool.sync)
        finally:
            self._spool.close()
            self._closed_event.set()
        self._flush_lost_log()

    async def flush(self, timeout: float) -> bool:
        """Wait until every event emitted so far is confirmed by Kafka (queue and spool empty,
        nothing in flight); False if that did not happen within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if not self._queue and self._spool.empty and self._flight is None:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)

    @property
    def stats(self) -> EmitterStats:
        flight = self._flight
        return EmitterStats(len(self._queue), self._spool.pending_bytes,
                            len(flight.records) if flight else 0, self.kafka_up)

    @property
    def kafka_up(self) -> bool:
        """Kafka takes events now (a producer is connected and its last flight went through)."""
        return self._producer is not None and not self._away

    # -- the background task ----------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                if self._closing and loop.time() >= self._close_deadline:
                    return
                if self._spool.sync_due():
                    await asyncio.to_thread(self._spool.sync)
                if self._flight is not None:
                    await self._watch_flight()
                    continue
                if self._producer is None:
                    if self._away:
                        self._spool_queue()
                    if self._closing and self._connecting is None and self._away:
                        self._spool_queue()
                        return
                    await self._connect_step()
                    continue
                if not self._spool.empty:
                    if self._closing:
                        # The spool is older than the queue: the queue waits behind it, on disk.
                        self._spool_queue()
                        return
                    await self._replay_batch()
                    continue
                if self._queue:
                    batch = [self._queue.popleft()
                             for _ in range(min(self._batch_max, len(self._queue)))]
                    await self._hand_over(batch, None)
                    continue
                if self._closing:
                    return
                await self._sleep((), 0.25, wake_on_emit=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("emitter: unexpected error in the background task; retrying in 1 s")
                await asyncio.sleep(1.0)

    async def _replay_batch(self) -> None:
        spooled = self._spool.read(self._batch_max)
        if not spooled:
            # Unreadable bytes were dropped (and logged) by the spool; look again shortly.
            await asyncio.sleep(0.1)
            return
        records: list[Record] = []
        for item in spooled:
            record = _unframe(item.data)
            if record is None:
                self._lose(1, "unreadable in the spool")
            else:
                records.append(record)
        await self._hand_over(records, spooled[-1].position)

    async def _hand_over(self, records: list[Record], through: SpoolPosition | None) -> None:
        """Give a batch to the producer, in order, as the one flight."""
        producer = self._producer
        assert producer is not None
        loop = asyncio.get_running_loop()
        flight = _Flight(records, through, loop.time())
        self._flight = flight
        try:
            # The producer's buffer holds a whole batch, so this does not wait in practice; the
            # timeout only guards against an unexpected wait (e.g. metadata being refetched).
            await asyncio.wait_for(self._send_all(producer, flight), self._stall)
        except Exception as exc:
            # send() raises, or is cancelled, before aiokafka appends the event: the events not
            # in flight.futures definitely did not go to Kafka.
            flight.error = exc
        if flight.futures:
            flight.done = asyncio.gather(*flight.futures, return_exceptions=True)
        else:
            flight.done = loop.create_future()
            flight.done.set_result([])

    async def _send_all(self, producer: AIOKafkaProducer, flight: _Flight) -> None:
        topic = self.topic
        for key, value in flight.records:
            try:
                future = await producer.send(topic, value, key=key)
            except _POISON as exc:  # this one event can never be sent: settle counts it lost
                future = asyncio.get_running_loop().create_future()
                future.set_exception(exc)
            flight.futures.append(future)

    async def _watch_flight(self) -> None:
        flight = self._flight
        assert flight is not None and flight.done is not None
        if flight.done.done():
            self._settle(flight)
            return
        loop = asyncio.get_running_loop()
        age = loop.time() - flight.started
        if not self._away and age >= self._stall:
            self._away = True
            log.warning("emitter: Kafka has not confirmed %d events for %.1f s; spooling new "
                        "events while the producer keeps retrying", len(flight.records), age)
        if self._away:
            self._spool_queue()
            timeout = _SPOOL_TICK
        else:
            timeout = self._stall - age
        if self._closing:
            timeout = min(timeout, max(0.0, self._close_deadline - loop.time()))
        await self._sleep((flight.done,), timeout, wake_on_emit=False)

    def _settle(self, flight: _Flight) -> None:
        """Kafka answered for every event of the flight: count, acknowledge, requeue failures."""
        self._flight = None
        assert flight.done is not None
        results = flight.done.result()
        failed: list[Record] = []
        poisoned = 0
        error = flight.error
        for record, result in zip(flight.records, results, strict=False):  # unsent: no result
            if isinstance(result, BaseException):
                error = error or result
                if isinstance(result, _POISON):
                    poisoned += 1
                else:
                    failed.append(record)
        failed += flight.unsent
        delivered = len(flight.records) - len(failed) - poisoned
        self.sent.inc(delivered)
        if flight.through is not None:
            self.replayed.inc(delivered)
        if poisoned:
            self._lose(poisoned, "refused by Kafka for good")
            log.error("emitter: Kafka refused %d events for good (%r); they are dropped",
                      poisoned, error)
        if flight.through is not None or failed:
            self._requeue(flight.through, failed)
        if failed:
            self._away = True
            self._warn("failed", f"Kafka did not take {len(failed)} of {len(flight.records)} "
                       f"events ({error!r}); they are spooled, the producer is restarted")
            self._retire_producer()
        else:
            if self._away:
                log.info("emitter: Kafka confirms events again%s", "; replaying the spool"
                         if not self._spool.empty else "")
            self._away = False
            self._backoff = self._backoff_min

    def _abandon_flight(self) -> None:
        """close() ran out of time: spool every event of the flight Kafka has not confirmed."""
        flight = self._flight
        assert flight is not None
        if flight.done is not None and flight.done.done():
            self._settle(flight)
            return
        self._flight = None
        failed: list[Record] = []
        unknown = delivered = 0
        for record, future in zip(flight.records, flight.futures, strict=False):
            if not future.done():
                unknown += 1
                failed.append(record)
            elif future.cancelled() or future.exception() is not None:
                failed.append(record)
            else:
                delivered += 1
        failed += flight.unsent
        self.sent.inc(delivered)
        if flight.through is not None:
            self.replayed.inc(delivered)
        if unknown:
            log.warning("emitter: closing with %d events Kafka has not confirmed; they are "
                        "spooled and may appear twice in the topic after the next start",
                        unknown)
        self._requeue(flight.through, failed)

    def _requeue(self, through: SpoolPosition | None, records: Sequence[Record]) -> None:
        taken = self._spool.acknowledge(through, [_frame(k, v) for k, v in records])
        self.spooled.inc(taken)
        if taken < len(records):
            self._lose(len(records) - taken, "the spool is full")

    # -- connecting -------------------------------------------------------------------------

    async def _connect_step(self) -> None:
        loop = asyncio.get_running_loop()
        if self._connecting is None:
            wait = self._next_connect - loop.time()
            if wait > 0:
                await self._sleep((), min(wait, _SPOOL_TICK), wake_on_emit=False)
                return
            self._connecting = asyncio.create_task(self._connect())
        if not self._connecting.done():
            await self._sleep((self._connecting,), _SPOOL_TICK, wake_on_emit=False)
            return
        task, self._connecting = self._connecting, None
        try:
            self._producer = task.result()
        except Exception as exc:
            self._away = True
            self._next_connect = loop.time() + self._backoff
            self._warn("connect", f"cannot reach Kafka at {self.bootstrap_servers} or its topic "
                       f"{self.topic} ({exc!r}); events are spooled, retrying in "
                       f"{self._backoff:.1f} s")
            self._backoff = min(self._backoff * 2, self._backoff_max)
            return
        self._away = False
        log.info("emitter: producing to %s at %s%s", self.topic, self.bootstrap_servers,
                 "; replaying the spool first" if not self._spool.empty else "")

    async def _connect(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers, client_id=self.client_id,
            acks="all", enable_idempotence=True, linger_ms=self._linger_ms,
            request_timeout_ms=self._request_timeout_ms,
            # Room for a whole flight in one partition's buffer, so send() never waits.
            max_batch_size=1 << 20)
        try:
            await asyncio.wait_for(producer.start(), self._connect_timeout)
            await asyncio.wait_for(producer.partitions_for(self.topic), self._connect_timeout)
        except BaseException:
            await _discard(producer)
            raise
        return producer

    def _retire_producer(self, stop_timeout: float = 5.0) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            task = asyncio.create_task(_discard(producer, stop_timeout))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        loop = asyncio.get_running_loop()
        self._next_connect = loop.time() + self._backoff
        self._backoff = min(self._backoff * 2, self._backoff_max)

    # -- moving events ----------------------------------------------------------------------

    def _spool_queue(self) -> None:
        if self._queue:
            records = list(self._queue)
            self._queue.clear()
            self._to_spool(records, defer_sync=True)

    def _to_spool(self, records: Sequence[Record], *, defer_sync: bool) -> None:
        taken = self._spool.append([_frame(k, v) for k, v in records], defer_sync=defer_sync)
        self.spooled.inc(taken)
        if taken < len(records):
            self._lose(len(records) - taken, "the spool is full")

    async def _sleep(self, waitables: Sequence[asyncio.Future[Any]], timeout: float | None, *,
                     wake_on_emit: bool) -> None:
        """Wait for any of `waitables`, a wake-up (close(), or emit() if asked), or timeout."""
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[None] = loop.create_future()
        self._wake, self._wake_on_emit = wake, wake_on_emit
        try:
            await asyncio.wait([wake, *waitables], timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._wake, self._wake_on_emit = None, False
            if not wake.done():
                wake.cancel()

    def _wake_now(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    # -- telling the operator ---------------------------------------------------------------

    def _lose(self, count: int, why: str) -> None:
        self.lost.inc(count)
        self._lost_unlogged += count
        now = time.monotonic()
        if now - self._lost_logged_at >= _LOG_EVERY:
            self._lost_logged_at = now
            log.error("emitter: lost %d announce events (latest: %s); raise the spool's size "
                      "or fix Kafka (meridian_events_lost_total counts them all)",
                      self._lost_unlogged, why)
            self._lost_unlogged = 0

    def _flush_lost_log(self) -> None:
        if self._lost_unlogged:
            log.error("emitter: lost %d more announce events", self._lost_unlogged)
            self._lost_unlogged = 0

    def _warn(self, kind: str, message: str, *, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._last_warning.get(kind, -_LOG_EVERY) >= _LOG_EVERY:
            self._last_warning[kind] = now
            log.warning("emitter: %s", message, exc_info=exc_info)


async def _discard(producer: AIOKafkaProducer, timeout: float = 5.0) -> None:
    """Stop a producer; if it will not stop in time (it is still retrying batches to a broker
    that is away), fail what it holds and close its connections."""
    try:
        await asyncio.wait_for(producer.stop(), timeout)
        return
    except Exception as exc:
        log.debug("emitter: producer did not stop cleanly (%r); forcing it", exc)
    # aiokafka has no public "stop now": reach into it, step by step, each step guarded.
    try:
        producer._message_accumulator.fail_all(KafkaError("the emitter closed this producer"))
    except Exception:
        log.debug("emitter: failing the producer's batches failed", exc_info=True)
    try:
        await asyncio.wait_for(producer._sender.close(), 2.0)
    except Exception:
        log.debug("emitter: the producer's sender did not stop", exc_info=True)
    try:
        await asyncio.wait_for(producer.client.close(), 2.0)
    except Exception:
        log.debug("emitter: the producer's connections did not close", exc_info=True)


def _frame(key: bytes, value: bytes) -> bytes:
    """A spool record: u8 key length | key | value."""
    return bytes((len(key),)) + key + value


def _unframe(data: bytes) -> Record | None:
    if not data or len(data) < 1 + data[0]:
        return None
    return data[1 : 1 + data[0]], data[1 + data[0]:]
