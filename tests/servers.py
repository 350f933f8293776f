"""Real servers for tests: free loopback ports, processes started and stopped by their PID.

Every helper here waits for readiness before it returns and stops only what it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from services.ops.local import free_port as local_free_port

ROOT = Path(__file__).resolve().parent.parent
MERIDIAN = [sys.executable, "-m", "services.cli"]


def free_port(kind: int = socket.SOCK_STREAM, both: bool = True) -> int:
    """A free loopback port; with `both`, free for TCP and UDP on 127.0.0.1 and ::1 (the
    tracker binds all four)."""
    if both:
        return local_free_port()
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def docker_answers() -> bool:
    """True when a Docker engine answers (a developer's laptop); never raises. Fixtures use
    testcontainers then, and local binaries otherwise (these machines)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def wait_for_http(url: str, timeout: float = 20.0, process: subprocess.Popen[bytes] | None = None
                  ) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    """SIGTERM this process (by its PID only), wait, SIGKILL if it will not go."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode


@dataclass
class RunningTracker:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    hosts: tuple[str, ...] = ("127.0.0.1", "::1")
    env: dict[str, str] = field(default_factory=dict)

    def base(self, host: str = "127.0.0.1") -> str:
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def announce_url(self, host: str = "127.0.0.1") -> str:
        return self.base(host) + "/announce"

    def udp_url(self, host: str = "127.0.0.1") -> str:
        h = f"[{host}]" if ":" in host else host
        return f"udp://{h}:{self.port}/announce"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def run_tracker(tmp: Path, *args: str, env: dict[str, str] | None = None,
                hosts: tuple[str, ...] = ("127.0.0.1", "::1")) -> Iterator[RunningTracker]:
    """`meridian serve` on a free port of the given hosts, ready when it yields."""
    port = free_port()
    log = tmp / f"tracker-{port}.log"
    full_env = {**os.environ, "MERIDIAN_UDP_SECRET": "test-secret-0123456789abcdef",
                "MERIDIAN_LOG_LEVEL": "warning", **(env or {})}
    host_args = [a for h in hosts for a in ("--host", h)]
    with open(log, "wb") as out:
        process = subprocess.Popen([*MERIDIAN, "serve", *host_args, "--port", str(port), *args],
                                   stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT)
    tracker = RunningTracker(process, port, log, hosts, full_env)
    try:
        wait_for_http(tracker.base(hosts[0]) + "/ready", process=process)
        yield tracker
    finally:
        stop_process(process)
