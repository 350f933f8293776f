"""A hybrid logical clock per node: timestamps that order events across regions.

A timestamp is one 64-bit integer: milliseconds of wall time in the high 48 bits and a logical
counter in the low 16. `tick` stamps a local event, `observe` folds in a remote timestamp, so a
node's timestamps never go backwards even when its wall clock does, and an event stamped after
seeing another always sorts after it. The wall clock is passed in: this module reads none.
"""

from __future__ import annotations

from collections.abc import Callable

LOGICAL_BITS = 16
_LOGICAL_MASK = (1 << LOGICAL_BITS) - 1


def physical_ms(timestamp: int) -> int:
    """The wall-clock part of a timestamp, in UNIX milliseconds."""
    return timestamp >> LOGICAL_BITS


def from_seconds(seconds: float) -> int:
    """The smallest timestamp at a wall time, for comparisons and Kafka offsets-for-times."""
    return int(seconds * 1000) << LOGICAL_BITS


class HybridClock:
    __slots__ = ("_wall", "_last")

    def __init__(self, wall: Callable[[], float]) -> None:
        self._wall = wall
        self._last = 0

    def tick(self) -> int:
        """A timestamp for a local event, greater than every one this clock gave or saw."""
        self._last = max(self._last + 1, from_seconds(self._wall()))
        return self._last

    def observe(self, remote: int) -> int:
        """Fold in a timestamp received from another node; returns the new local time."""
        self._last = max(self._last + 1, remote + 1, from_seconds(self._wall()))
        return self._last

    @property
    def last(self) -> int:
        return self._last
