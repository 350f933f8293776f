"""One load test: in this process, or split across worker processes, merged into one summary.

Worker k of n gets peers k, k+n, ... (so each peer's events stay in order), its share of the
window, the rate and the request count, and its own socket(s). Workers set up (UDP connect,
HTTP pool) and then wait at a barrier, so every worker measures the same seconds. Each sends
back its recorder; latencies are merged before percentiles are taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .http_load import HttpLoad
from .load import Load, RunError
from .pacing import Pacer
from .progress import ProgressBar
from .record import Recorder, summarise
from .target import Target
from .udp_load import UdpLoad
from .workload import Traffic, WorkloadShape

SETUP_TIMEOUT = 30.0


@dataclass(frozen=True)
class RunConfig:
    target: Target
    shape: WorkloadShape = field(default_factory=WorkloadShape)
    duration: float = 10.0
    requests: int | None = None
    rate: float | None = None
    window: int = 64
    keep_alive: bool = True
    timeout: float = 2.0
    workers: int = 1
    tracker_pids: tuple[int, ...] = ()

    def share(self, worker: int) -> RunConfig:
        """This worker's part of the window, the rate and the count."""
        n = self.workers

        def part(total: int) -> int:
            return total // n + (1 if worker < total % n else 0)

        return replace(
            self,
            window=max(part(self.window), 1),
            rate=self.rate / n if self.rate is not None else None,
            requests=part(self.requests) if self.requests is not None else None,
            tracker_pids=self.tracker_pids if worker == 0 else (),
        )

    def settings(self) -> dict[str, Any]:
        return {
            "url": self.target.url,
            "protocol": self.target.protocol,
            "keep_alive": self.keep_alive,
            "window": self.window,
            "rate": self.rate,
            "workers": self.workers,
            "duration_s": self.duration,
            "requests_limit": self.requests,
            "timeout_s": self.timeout,
            **asdict(self.shape),
        }


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # plain asyncio works, only slower
        return asyncio.new_event_loop()


def _load(config: RunConfig, worker: int, recorder: Recorder) -> Load:
    traffic = Traffic(config.shape, worker, config.workers)
    pacer = Pacer(duration=config.duration, requests=config.requests, rate=config.rate)
    if config.target.protocol == "udp":
        return UdpLoad(config.target, traffic, pacer, recorder, window=config.window,
                       timeout=config.timeout, tracker_pids=config.tracker_pids)
    return HttpLoad(config.target, traffic, pacer, recorder, window=config.window,
                    timeout=config.timeout, keep_alive=config.keep_alive,
                    tracker_pids=config.tracker_pids)


async def _drive(config: RunConfig, worker: int, recorder: Recorder,
                 report: Callable[[float, int, int], None],
                 ready: Callable[[], Any] | None) -> None:
    load = _load(config, worker, recorder)

    async def watch() -> None:
        while True:
            await asyncio.sleep(0.1)
            if load.pacer.started_at:
                report(time.perf_counter() - load.pacer.started_at, recorder.ok,
                       recorder.error_count)

    watcher = asyncio.ensure_future(watch())
    try:
        await load.run(ready)
    finally:
        watcher.cancel()
        recorder.events = dict(load.traffic.events)


def run_here(config: RunConfig, progress: ProgressBar) -> Recorder:
    recorder = Recorder()
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        try:
            runner.run(_drive(config, 0, recorder, progress.update, None))
        finally:
            progress.close()
    return recorder


def _worker(config: RunConfig, worker: int, barrier: Any, counters: Any, results: Any) -> None:
    """A worker process: run this worker's share and put its recorder (or an error) on results."""
    recorder = Recorder()

    def report(elapsed: float, ok: int, errors: int) -> None:
        counters[3 * worker: 3 * worker + 3] = [elapsed, float(ok), float(errors)]

    async def ready() -> None:
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait, SETUP_TIMEOUT)

    try:
        with asyncio.Runner(loop_factory=_new_loop) as runner:
            runner.run(_drive(config.share(worker), worker, recorder, report, ready))
    except RunError as exc:
        barrier.abort()
        results.put((worker, {"error": str(exc)}))
        return
    except threading.BrokenBarrierError:
        results.put((worker, {"error": "another worker failed to start"}))
        return
    except BaseException as exc:  # a bug: report it rather than hang the parent
        barrier.abort()
        results.put((worker, {"error": f"worker {worker} crashed: {exc!r}"}))
        return
    results.put((worker, recorder.export()))


@contextlib.contextmanager
def _processes(config: RunConfig, barrier: Any, counters: Any, results: Any
               ) -> Iterator[Sequence[multiprocessing.process.BaseProcess]]:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker, args=(config, k, barrier, counters, results),
                                 name=f"loadtest-worker-{k}", daemon=True)
                 for k in range(config.workers)]
    for process in processes:
        process.start()
    try:
        yield processes
    finally:
        for process in processes:  # only our own children, by their handles
            process.join(5)
            if process.is_alive():
                process.terminate()
                process.join(5)


def run_workers(config: RunConfig, progress: ProgressBar) -> Recorder:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(config.workers)
    counters = context.Array("d", 3 * config.workers, lock=False)
    results = context.Queue()
    parts: dict[int, dict[str, Any]] = {}
    limit = time.monotonic() + SETUP_TIMEOUT + config.duration + 2 * config.timeout + 15
    with _processes(config, barrier, counters, results) as processes:
        try:
            while len(parts) < config.workers and time.monotonic() < limit:
                with contextlib.suppress(Exception):
                    worker, part = results.get(timeout=0.2)
                    parts[worker] = part
                if len(parts) < config.workers and all(not p.is_alive() for p in processes):
                    with contextlib.suppress(Exception):
                        while True:
                            worker, part = results.get(timeout=0.5)
                            parts[worker] = part
                    break
                values = list(counters)
                progress.update(max(values[0::3]), int(sum(values[1::3])),
                                int(sum(values[2::3])))
        finally:
            progress.close()
    errors = [p["error"] for p in parts.values() if "error" in p]
    if errors:
        raise RunError(errors[0])
    if len(parts) < config.workers:
        raise RunError(f"{config.workers - len(parts)} of {config.workers} workers gave no "
                       "result before the time bound")
    return Recorder.merge(list(parts.values()))


def run(config: RunConfig, *, show_progress: bool = True) -> dict[str, Any]:
    """Run the load test and return the summary (what --json prints)."""
    progress = ProgressBar(config.duration, config.requests, enabled=show_progress)
    if config.workers > 1:
        recorder = run_workers(config, progress)
    else:
        recorder = run_here(config, progress)
    summary = summarise(recorder, config.settings())
    summary["cpus"] = len(os.sched_getaffinity(0))
    return summary
