"""Shared fixtures: a real `meridian serve` process on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import RunningTracker, run_tracker


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTracker]:
    """One tracker (memory store) on 127.0.0.1 and ::1, shared by a test module."""
    with run_tracker(Path(tmp_path_factory.mktemp("tracker"))) as running:
        yield running


@pytest.fixture(scope="session")
def sandbox_regions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`meridian sandbox up` with regions eu, us and ap, shared by the multi-region tests;
    everything it started is stopped by PID at the end of the session."""
    from services.ops import sandbox

    state = sandbox.up(["eu", "us", "ap"], base=Path(tmp_path_factory.mktemp("sandbox")))
    try:
        yield state
    finally:
        stopped = sandbox.down(state)
        assert not [pid for pid in stopped if sandbox.alive(pid)]
