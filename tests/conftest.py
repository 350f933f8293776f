"""Shared fixtures: a real `meridian serve` process on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import RunningTracker, run_tracker


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTracker]:
    """One tracker (memory store) on 127.0.0.1 and ::1, shared by a test module."""
    with run_tracker(Path(tmp_path_factory.mktemp("tracker"))) as running:
        yield running
