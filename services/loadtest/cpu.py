"""CPU seconds of a process on this machine (and its live children), read from /proc.

`--tracker-pid` (repeatable: a tracker and its Redis) uses it to report how busy the tracker was during the measured seconds, which
says who limited a run: a tracker near 100% of its core is saturated; a generator near 100%
(its own `loadgen_cpu_s`) means the generator was the bottleneck instead.
"""

from __future__ import annotations

import os
from pathlib import Path


def _own_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores of this machine spent busy (not idle or waiting), from /proc/stat.

    Minus the tracker's and the generator's own, it is what other programs took meanwhile: on a
    shared machine, the noise in a measurement.
    """
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # softirq is left out: on loopback it is mostly the kernel carrying this very traffic.
    user, nice, system, _idle, _iowait, irq, _softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + steal) / os.sysconf("SC_CLK_TCK")


def processes_cpu_seconds(pids: tuple[int, ...]) -> float | None:
    """utime + stime of these processes and their live descendants, each counted once.

    None if one of `pids` is not readable (gone, or not on this machine).
    """
    total = 0.0
    for pid in pids:
        try:
            total += _own_seconds(pid)
        except (OSError, ValueError, IndexError):
            return None
    pending = [child for pid in pids for child in _children(pid)]
    seen = set(pids)
    while pending:
        child = pending.pop()
        if child in seen:
            continue
        seen.add(child)
        try:
            total += _own_seconds(child)
            pending += _children(child)
        except (OSError, ValueError, IndexError):
            continue
    return total
