"""`meridian reconcile`: one reconciler process for one region.

Opens the region's store, rebuilds it first if it is empty (or when asked), then runs the
consumer group until SIGINT or SIGTERM. While it runs, it keeps checking the store's
"populated" flag, so a Redis that restarts empty under it is rebuilt without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time

from prometheus_client import start_http_server

from services.settings import Settings
from services.stores import open_store

from .consumer import Reconciler
from .metrics import ReconcilerMetrics
from .rebuild import needs_rebuild, rebuild

log = logging.getLogger(__name__)
CHECK_EVERY = 2.0


def progress_bar(stream=sys.stderr):  # type: ignore[no-untyped-def]
    """A terminal progress bar for rebuilds; silent when stderr is not a terminal."""
    def draw(done: int, total: int) -> None:
        if not stream.isatty() or total <= 0:
            return
        width = 30
        filled = int(width * done / total)
        stream.write(f"\rrebuild [{'#' * filled}{'.' * (width - filled)}] "
                     f"{100 * done // total:3d}% {done}/{total} events")
        if done >= total:
            stream.write("\n")
        stream.flush()
    return draw


async def reconcile(settings: Settings, force_rebuild: bool = False) -> None:
    if not settings.kafka_bootstrap:
        raise SystemExit("the reconciler needs Kafka: set --kafka or MERIDIAN_KAFKA_BOOTSTRAP")
    store = open_store(settings)
    await store.start()
    metrics = ReconcilerMetrics()
    if settings.reconciler_metrics_port:
        start_http_server(settings.reconciler_metrics_port, addr="127.0.0.1",
                          registry=metrics.registry)
    reconciler = Reconciler(settings, store, metrics)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, reconciler.stop)

    async def rebuild_when_empty() -> None:
        first = force_rebuild
        while not reconciler.stopping.is_set():
            try:
                if first or await needs_rebuild(store):
                    first = False
                    started = time.monotonic()
                    merged = await rebuild(settings, store, metrics, progress_bar(),
                                           stopping=reconciler.stopping)
                    log.info("region %s rebuilt: %d events in %.1fs", settings.region, merged,
                             time.monotonic() - started)
            except Exception:
                log.exception("rebuild failed; will retry")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(reconciler.stopping.wait(), CHECK_EVERY)

    watcher = asyncio.create_task(rebuild_when_empty())
    try:
        await reconciler.run()
    finally:
        reconciler.stop()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
        await store.close()


async def rebuild_once(settings: Settings) -> int:
    """Rebuild the region's store now and return (`meridian reconcile --rebuild-only`)."""
    if not settings.kafka_bootstrap:
        raise SystemExit("a rebuild needs Kafka: set --kafka or MERIDIAN_KAFKA_BOOTSTRAP")
    store = open_store(settings)
    await store.start()
    try:
        merged = await rebuild(settings, store, ReconcilerMetrics(), progress_bar())
    finally:
        await store.close()
    print(f"region {settings.region} rebuilt: {merged} events merged")
    return merged


def run(settings: Settings, force_rebuild: bool = False, rebuild_only: bool = False) -> int:
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if rebuild_only:
        asyncio.run(rebuild_once(settings))
        return 0
    asyncio.run(reconcile(settings, force_rebuild))
    return 0
