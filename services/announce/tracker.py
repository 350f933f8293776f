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
from collections.abc import Callable

from services.core.errors import ClientError
from services.core.events import AnnounceEvent
from services.core.hlc import HybridClock
from services.core.model import AnnounceReply, AnnounceRequest, Peer, SwarmStats
from services.settings import Settings
from services.stores.base import PeerStore

from .metrics import AnnounceMetrics

log = logging.getLogger(__name__)

EventSink = Callable[[AnnounceEvent], None]


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
        self._inflight = 0
        self._gc_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.store.start()
        self._gc_task = asyncio.create_task(self._collect_garbage_forever())

    async def close(self) -> None:
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

    def numwant(self, request: AnnounceRequest) -> int:
        wanted = self.settings.default_numwant if request.numwant is None else request.numwant
        return min(wanted, self.settings.max_numwant)

    async def announce(self, request: AnnounceRequest, client_ip: bytes,
                       protocol: str = "http") -> AnnounceReply:
        """Record the announce, answer it, then hand its event to the event sinks."""
        if self._inflight >= self.settings.max_inflight_announces:
            raise ClientError("tracker is busy, retry later", "overloaded",
                              retry_in_minutes=self.settings.shed_retry_in_minutes)
        self._inflight += 1
        started = time.perf_counter()
        try:
            now = self.clock()
            hlc = self.hlc.tick()
            peer = Peer(client_ip, request.port, request.peer_id)
            answer = await self.store.announce(
                request.info_hash, peer, request.event, request.seeder, self.numwant(request),
                now, version=(hlc, self.settings.region, self.settings.node))
        finally:
            self._inflight -= 1
            self.metrics.latency.labels(protocol).observe(time.perf_counter() - started)
        reply = AnnounceReply(answer, self.settings.announce_interval,
                              self.settings.min_announce_interval, client_ip)
        if self.event_sinks:
            # Fields are valid by construction (parsed request, socket address), so the
            # model's validation is skipped on this hot path.
            event = AnnounceEvent.model_construct(
                region=self.settings.region, node=self.settings.node, hlc=hlc,
                info_hash=request.info_hash, ip=client_ip, port=request.port,
                peer_id=request.peer_id, kind=request.event, seeder=request.seeder,
                expires_ms=int((now + self.settings.effective_peer_ttl) * 1000),
                schema_version=1)
            for sink in self.event_sinks:
                try:
                    sink(event)
                except Exception:
                    log.exception("event sink failed; the answer was still sent")
        return reply

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
        stats = await self.store.scrape(info_hashes, now)
        return dict(zip(info_hashes, stats, strict=True))
