"""What both drivers share: keep `window` requests in flight, or send on a fixed schedule.

A driver (UDP or HTTP) says how many requests it could start now (`capacity`), starts one
(`launch`) and reports each finished request (`finished`); this class decides when to launch,
sweeps requests that outlived the timeout, and resolves `done` once the bounds are reached and
nothing is in flight. Everything is callback-driven on one event loop, with no task per
request, so the generator spends its time on the codecs rather than on scheduling.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from .cpu import machine_busy_seconds, processes_cpu_seconds
from .pacing import Pacer
from .record import Recorder
from .workload import Traffic

LATE = 0.005  # a paced request sent this much after it fell due counts as behind


class RunError(RuntimeError):
    """The run could not start or went wrong as a whole (nothing listening, and so on)."""


class Load:
    def __init__(self, traffic: Traffic, pacer: Pacer, recorder: Recorder, *, window: int,
                 timeout: float, tracker_pids: tuple[int, ...] = ()) -> None:
        self.traffic = traffic
        self.pacer = pacer
        self.recorder = recorder
        self.window = window
        self.timeout = timeout
        self.tracker_pids = tracker_pids
        self.inflight = 0
        self.last_answer = 0.0
        self.done: asyncio.Future[None] | None = None
        self._background: list[asyncio.Task[None]] = []

    # -- for the drivers to implement
    async def setup(self) -> None:
        raise NotImplementedError

    async def teardown(self) -> None:
        raise NotImplementedError

    def capacity(self) -> int:
        raise NotImplementedError

    def launch(self) -> None:
        """Start one request now (the pacer has already counted it)."""
        raise NotImplementedError

    def expire(self, now: float) -> None:
        """Fail every request sent before `now - timeout`."""
        raise NotImplementedError

    # -- the common part
    def finished(self, now: float) -> None:
        self.inflight -= 1
        self.last_answer = now
        if self.pacer.rate is None:
            self.fill()
        else:
            self.send_due(now)
        if self.inflight == 0 and not self.pacer.open(now):
            self._finish()

    def fill(self) -> None:
        free = self.capacity()
        while free > 0 and self.pacer.take():
            self.launch()
            free -= 1

    def send_due(self, now: float) -> None:
        due = min(self.pacer.due(now), self.capacity())
        assert self.pacer.rate is not None
        for _ in range(due):
            scheduled = self.pacer.started_at + self.pacer.issued / self.pacer.rate
            if now - scheduled > LATE:
                self.recorder.behind += 1
            self.pacer.issued += 1
            self.launch()

    def _finish(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            now = time.perf_counter()
            self.expire(now)
            if self.inflight == 0 and not self.pacer.open(now):
                self._finish()

    async def _tick(self) -> None:
        while True:
            self.send_due(time.perf_counter())
            await asyncio.sleep(0.001)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a background coroutine, held until it ends (the HTTP driver spawns many)."""
        self._background.append(asyncio.ensure_future(coroutine))
        if len(self._background) > 4 * self.window + 16:
            self._background = [task for task in self._background if not task.done()]

    async def run(self, ready: Callable[[], Awaitable[None]] | None = None) -> None:
        """Set up, wait for `ready` (the other workers), run to the bounds, tear down."""
        await self.setup()
        if ready is not None:
            try:
                await ready()
            except BaseException:
                await self.teardown()
                raise
        self.done = asyncio.get_running_loop().create_future()
        self.pacer.start()
        cpu = time.process_time()
        tracker_cpu = processes_cpu_seconds(self.tracker_pids) if self.tracker_pids else None
        machine = machine_busy_seconds()
        self.last_answer = self.pacer.started_at
        self.spawn(self._sweep())
        if self.pacer.rate is None:
            self.fill()
        else:
            self.spawn(self._tick())
        try:
            await asyncio.wait_for(self.done, self.pacer.duration + 2 * self.timeout + 5)
        except TimeoutError:
            self.recorder.error("run_overtime", "requests still in flight after the time bound")
        finally:
            end = max(self.last_answer, self.pacer.started_at + 1e-6)
            self.recorder.elapsed = end - self.pacer.started_at
            self.recorder.cpu = time.process_time() - cpu
            machine_after = machine_busy_seconds()
            if machine is not None and machine_after is not None:
                self.recorder.machine_cpu = machine_after - machine
            if tracker_cpu is not None:
                after = processes_cpu_seconds(self.tracker_pids)
                if after is not None:
                    self.recorder.tracker_cpu = after - tracker_cpu
            for task in self._background:
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            await self.teardown()
