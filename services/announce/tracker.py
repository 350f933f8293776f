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
from services.core.model import AnnounceReply, AnnounceRequest, Peer, SwarmStats
from services.settings import Settings
from services.stores.base import PeerStore

from .metrics import AnnounceMetrics

log = logging.getLogger(__name__)

AfterAnnounce = Callable[[AnnounceRequest, Peer, float], None]


class Tracker:
    def __init__(self, settings: Settings, store: PeerStore, metrics: AnnounceMetrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.after_announce: list[AfterAnnounce] = []
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
        """Record the announce, answer it, then hand it to the after-announce hooks."""
        if self._inflight >= self.settings.max_inflight_announces:
            raise ClientError("tracker is busy, retry later", "overloaded",
                              retry_in_minutes=self.settings.shed_retry_in_minutes)
        self._inflight += 1
        started = time.perf_counter()
        try:
            now = self.clock()
            peer = Peer(client_ip, request.port, request.peer_id)
            answer = await self.store.announce(request.info_hash, peer, request.event,
                                               request.seeder, self.numwant(request), now)
        finally:
            self._inflight -= 1
            self.metrics.latency.labels(protocol).observe(time.perf_counter() - started)
        reply = AnnounceReply(answer, self.settings.announce_interval,
                              self.settings.min_announce_interval, client_ip)
        for hook in self.after_announce:
            try:
                hook(request, peer, now)
            except Exception:
                log.exception("after-announce hook failed; the answer was still sent")
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
