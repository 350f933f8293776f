"""When the next request may go: a run is bounded by a count and a time, and optionally paced.

Closed loop (no rate): a new request starts as soon as one of the `window` in-flight requests
finishes, which measures saturation. Fixed rate: requests fall due at `rate` per second whatever
the answers do (open loop, as wrk2 does), which measures latency at a chosen load; a request that
falls due while the window is full waits, and is counted as `behind`, so a tracker (or a
generator) that cannot keep up shows up in the report instead of silently lowering the rate.
"""

from __future__ import annotations

import time


class Pacer:
    def __init__(self, *, duration: float, requests: int | None, rate: float | None) -> None:
        self.duration = duration
        self.requests = requests
        self.rate = rate
        self.started_at = 0.0
        self.deadline = 0.0
        self.issued = 0
        self.behind = 0

    def start(self) -> None:
        self.started_at = time.perf_counter()
        self.deadline = self.started_at + self.duration

    def open(self, now: float | None = None) -> bool:
        """May any more requests start (count and time bounds)?"""
        if self.requests is not None and self.issued >= self.requests:
            return False
        return (now if now is not None else time.perf_counter()) < self.deadline

    def take(self) -> bool:
        """Closed loop: claim the right to start one request."""
        if not self.open():
            return False
        self.issued += 1
        return True

    def due(self, now: float) -> int:
        """Fixed rate: how many requests have fallen due and not been issued yet."""
        assert self.rate is not None
        due = int((min(now, self.deadline) - self.started_at) * self.rate) - self.issued
        if self.requests is not None:
            due = min(due, self.requests - self.issued)
        return max(due, 0)
