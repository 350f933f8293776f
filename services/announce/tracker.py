"""The announce logic both frontends share: policy around the store, protocol-neutral.

HTTP and UDP parse their own wire format into an `AnnounceRequest`, call `Tracker.announce`
and encode the `AnnounceReply` back. Here are the decisions that do not depend on the wire:
numwant defaults and caps, intervals, load shedding (BEP 31), and the hooks that run after an
answer is built (the Kafka emitter of a later issue hangs there, so it never delays a reply).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.core.errors import ClientError
from services.core.events import AnnounceEvent
from services.core.hlc import HybridClock
from services.core.model import (
    AnnounceReply,
    AnnounceRequest,
    Event,
    Peer,
    SwarmAnswer,
    SwarmStats,
)
from services.ops.emergency import EmergencyPolicy, EmergencyWatcher
from services.settings import Settings
from services.stores.base import PeerStore, StoreUnavailable

from .fallback import BreakerState, CircuitBreaker, StaleCache, stretched_intervals
from .metrics import AnnounceMetrics

log = logging.getLogger(__name__)

EventSink = Callable[[AnnounceEvent], None]
T = TypeVar("T")


class Tracker:
    def __init__(self, settings: Settings, store: PeerStore, metrics: AnnounceMetrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.hlc = HybridClock(clock)
        # Called with each answered announce's event after its reply is built (the Kafka
        # emitter); a sink must not block or raise.
        self.event_sinks: list[EventSink] = []
        # Degraded mode: only a shared store can fail; the in-process memory store cannot.
        self.cache: StaleCache | None = None
        if settings.shared_store:
            self.cache = StaleCache(
                settings.effective_peer_ttl, settings.stale_cache_torrents,
                settings.stale_cache_peers, settings.stale_cache_max_peers,
                settings.stale_cache_merge_every)
        self.breaker = CircuitBreaker(settings.breaker_failure_threshold,
                                      settings.breaker_open_seconds, settings.breaker_probe_count,
                                      on_change=self._breaker_changed)
        self.policy = EmergencyPolicy.from_settings(settings)
        self.emergency: EmergencyWatcher | None = None  # set by the app's lifespan
        # Announces answered from the cache were not written to the store; they are written
        # (merged, last writer wins) once it answers again, so the region is backfilled.
        self._backlog: deque[AnnounceEvent] = deque()
        self._backlog_overflowed = False
        self._backfill: asyncio.Task[None] | None = None
        self._inflight = 0
        self._gc_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.store.start()
        self._gc_task = asyncio.create_task(self._collect_garbage_forever())

    async def close(self) -> None:
        if self._backfill is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._backfill), 5)
        if self._gc_task is not None:
            self._gc_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gc_task
        await self.store.close()

    async def _collect_garbage_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.gc_interval)
            try:
                removed = await self.store.collect_garbage(self.clock())
                if removed:
                    log.debug("collected %d expired peers", removed)
            except Exception:
                log.exception("garbage collection of expired peers failed; will retry")

    def _breaker_changed(self, old: BreakerState, new: BreakerState) -> None:
        self.metrics.breaker_state.set({"closed": 0, "half_open": 1, "open": 2}[new.value])
        log.warning("store circuit breaker %s -> %s%s", old.value, new.value,
                    ": answering from the stale cache" if new is BreakerState.OPEN else "")

    @property
    def in_emergency(self) -> bool:
        return self.emergency is not None and self.emergency.active

    def numwant(self, request: AnnounceRequest) -> int:
        wanted = self.settings.default_numwant if request.numwant is None else request.numwant
        return min(wanted, self.settings.max_numwant)

    async def announce(self, request: AnnounceRequest, client_ip: bytes,
                       protocol: str = "http") -> AnnounceReply:
        """Record the announce, answer it, then hand its event to the event sinks.

        When the store fails (or the breaker is open, or emergency mode prefers it), the answer
        comes from this process's stale cache and carries its age; the event still goes to
        the sinks, so Kafka backfills the region when the store returns.
        """
        emergency = self.in_emergency
        limit = self.policy.max_inflight if emergency else self.settings.max_inflight_announces
        if self._inflight >= limit:
            raise ClientError("tracker is busy, retry later", "overloaded",
                              retry_in_minutes=self.settings.shed_retry_in_minutes)
        self._inflight += 1
        started = time.perf_counter()
        stale_age: float | None = None
        try:
            now = self.clock()
            hlc = self.hlc.tick()
            peer = Peer(client_ip, request.port, request.peer_id)
            numwant = self.numwant(request)
            if emergency:
                numwant = self.policy.cap_numwant(numwant)
            cached_numwant = 0 if request.event is Event.STOPPED else numwant
            answer: SwarmAnswer | None = None
            cache = self.cache
            if cache is not None:
                cache.remember_announce(request.info_hash, peer, request.seeder, request.event,
                                        now)
                if emergency:
                    cached = cache.answer(request.info_hash, peer, request.seeder,
                                          cached_numwant, now, max_age=self.policy.cache_max_age)
                    if cached is not None:
                        answer, stale_age = cached
            if answer is None:
                answer = await self._ask_store(lambda: self.store.announce(
                    request.info_hash, peer, request.event, request.seeder, numwant, now,
                    version=(hlc, self.settings.region, self.settings.node)))
                if answer is not None and cache is not None:
                    cache.remember_answer(request.info_hash, peer.family, answer, now,
                                          requester_seeder=request.seeder)
                    if self._backlog and self._backfill is None:
                        self._backfill = asyncio.create_task(self._write_backlog())
            if answer is None:
                assert cache is not None
                cached = cache.answer(request.info_hash, peer, request.seeder, cached_numwant,
                                      now)
                answer, stale_age = cached or (SwarmAnswer(SwarmStats(), ()), 0.0)
            if stale_age is not None:
                self.metrics.stale.labels(protocol).inc()
        finally:
            self._inflight -= 1
            self.metrics.latency_of(protocol).observe(time.perf_counter() - started)
        reply = self._reply(answer, client_ip, stale_age, emergency)
        if self.event_sinks or stale_age is not None:
            # Fields are valid by construction (parsed request, socket address), so the
            # model's validation is skipped on this hot path.
            event = AnnounceEvent.model_construct(
                region=self.settings.region, node=self.settings.node, hlc=hlc,
                info_hash=request.info_hash, ip=client_ip, port=request.port,
                peer_id=request.peer_id, kind=request.event, seeder=request.seeder,
                expires_ms=int((now + self.settings.effective_peer_ttl) * 1000),
                schema_version=1)
            if stale_age is not None:
                self._remember_unwritten(event)
            for sink in self.event_sinks:
                try:
                    sink(event)
                except Exception:
                    log.exception("event sink failed; the answer was still sent")
        return reply

    async def _ask_store(self, call: Callable[[], Awaitable[T]]) -> T | None:
        """Call the store through the breaker; None means: answer from the cache instead.
        Without a cache (the in-process memory store) the call is made and a failure raised."""
        if self.cache is None:
            return await call()
        if not self.breaker.allow():
            return None
        try:
            result = await call()
        except StoreUnavailable:
            self.breaker.record_failure()
            return None
        self.breaker.record_success()
        return result

    def _remember_unwritten(self, event: AnnounceEvent) -> None:
        if len(self._backlog) >= self.settings.backfill_max:
            self._backlog.popleft()
            self._backlog_overflowed = True
        self._backlog.append(event)

    async def _write_backlog(self) -> None:
        """Merge the announces answered from the cache into the store, oldest first; if some
        were dropped (the backlog is bounded), ask the reconciler for a full rebuild, which
        replays this region's own topic too."""
        try:
            while self._backlog:
                chunk = [self._backlog.popleft() for _ in range(min(500, len(self._backlog)))]
                try:
                    await self.store.apply(chunk, self.clock())
                except StoreUnavailable:
                    self._backlog.extendleft(reversed(chunk))
                    return  # the next good store answer starts another attempt
            if self._backlog_overflowed:
                self._backlog_overflowed = False
                log.warning("more announces were answered from the cache than the backfill "
                            "keeps (backfill_max); asking the reconciler to rebuild the region")
                with contextlib.suppress(StoreUnavailable):
                    await self.store.set_flag("populated", None)
        except Exception:
            log.exception("writing announces answered from the cache failed; will retry")
        finally:
            self._backfill = None

    def _reply(self, answer: SwarmAnswer, client_ip: bytes, stale_age: float | None,
               emergency: bool) -> AnnounceReply:
        settings = self.settings
        if emergency:
            interval, min_interval = self.policy.intervals(settings)
        else:
            interval, min_interval = settings.announce_interval, settings.min_announce_interval
        if stale_age is None:
            return AnnounceReply(answer, interval, min_interval, client_ip)
        interval, min_interval = stretched_intervals(
            interval, min_interval, settings.stale_interval_factor, settings.effective_peer_ttl)
        return AnnounceReply(
            answer, interval, min_interval, client_ip,
            warning=f"degraded: answered from this node's cache ({int(stale_age)} s old); "
                    "peers may be incomplete",
            stale_age=stale_age)

    @property
    def inflight(self) -> int:
        return self._inflight

    async def scrape(self, info_hashes: tuple[bytes, ...]) -> dict[bytes, SwarmStats]:
        now = self.clock()
        if not info_hashes:
            if not self.settings.full_scrape_enabled:
                raise ClientError("full scrape is disabled on this tracker; name info_hash",
                                  "full_scrape_disabled")
            return await self.store.full_scrape(self.settings.full_scrape_limit, now)
        stats = await self._ask_store(lambda: self.store.scrape(info_hashes, now))
        if stats is not None:
            return dict(zip(info_hashes, stats, strict=True))
        cache = self.cache
        assert cache is not None
        return {h: cache.scrape(h) or SwarmStats() for h in info_hashes}
