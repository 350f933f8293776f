"""`meridian sandbox up --json` and `sandbox down` as a newcomer and scripts use them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from services.ops.local import alive
from tests.servers import MERIDIAN, ROOT

pytestmark = pytest.mark.timeout(300)


def test_sandbox_up_json_then_down(tmp_path: Path) -> None:
    base = tmp_path / "sandbox"
    up = subprocess.run([*MERIDIAN, "sandbox", "up", "--regions", "eu,us", "--json",
                         "--dir", str(base)], capture_output=True, text=True, cwd=ROOT,
                        timeout=240)
    pids: list[int] = []
    try:
        assert up.returncode == 0, up.stderr
        described = json.loads(up.stdout)
        assert set(described["regions"]) == {"eu", "us"}
        assert described["kafka"].startswith("127.0.0.1:")
        for region in described["regions"].values():
            assert region["http"].startswith("http://127.0.0.1:")
            assert region["udp"].startswith("udp://127.0.0.1:")
            assert region["redis"].startswith("redis://127.0.0.1:")
            assert set(region["pids"]) == {"redis", "announce", "reconciler"}
            pids += region["pids"].values()
            assert all(alive(pid) for pid in region["pids"].values())
            health = region["http"].rsplit("/", 1)[0] + "/health"
            assert httpx.get(health).json()["status"] == "ok"
    finally:
        down = subprocess.run([*MERIDIAN, "sandbox", "down", "--dir", str(base)],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert down.returncode == 0, down.stderr
    assert pids and not [pid for pid in pids if alive(pid)]
