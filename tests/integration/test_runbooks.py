"""Runbooks are executable: every `sh step` block of a runbook is run, in order, against the
sandbox after the failure it is written for has been caused there."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from services.ops import sandbox
from tests.servers import ROOT

pytestmark = pytest.mark.timeout(400)
STEP = re.compile(r"```sh step=(\S+)\n(.*?)```", re.S)


def steps(runbook: Path) -> list[tuple[str, str]]:
    found = STEP.findall(runbook.read_text())
    assert found, f"{runbook} has no `sh step` blocks"
    return found


def run_step(name: str, script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    venv_bin = str(Path(sys.executable).parent)  # `meridian` as an operator's PATH has it
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                          text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, **env, "PATH": f"{venv_bin}:{os.environ['PATH']}"})


def test_regional_cache_lost(sandbox_regions: dict[str, Any]) -> None:
    state = sandbox_regions
    from services.core.model import AnnounceRequest
    from tests.clients import HttpClient

    for n, region in enumerate(("eu", "us", "ap") * 4):  # swarms that must survive the loss
        client = HttpClient(f"http://127.0.0.1:{state['regions'][region]['port']}")
        try:
            client.announce(AnnounceRequest(os.urandom(20), bytes([n + 100]) * 20, 55000 + n,
                                            left=n % 2))
        finally:
            client.close()
    victim = state["regions"]["ap"]
    os.kill(victim["pids"]["redis"], signal.SIGKILL)  # the sandbox's own redis-server
    time.sleep(0.5)
    sandbox.start_role(state, "ap", "redis")  # back, empty, on the same port
    env = {"NODE": f"http://127.0.0.1:{victim['port']}", "REGION": "ap",
           "STORE": victim["redis"], "KAFKA": state["kafka"],
           "OTHER_STORE": state["regions"]["eu"]["redis"]}
    outputs = {}
    for name, script in steps(ROOT / "runbooks" / "regional-cache-lost.md"):
        result = run_step(name, script, env)
        outputs[name] = result.stdout
        assert result.returncode == 0, f"step {name} failed:\n{result.stdout}\n{result.stderr}"
    assert "rebuilt" in outputs["rebuild"]
    assert '"equal": true' in outputs["compare"]
