"""Local server processes for the sandbox and the tests: redis-server, a Kafka broker, and
Meridian's own commands, on free loopback ports, each stopped by its own PID.

Nothing here stops a process it did not start: `stop_pid` is only ever given PIDs recorded
when the process was launched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KAFKA_TOOLS = ROOT / "tools" / "kafka"


class LocalServerError(RuntimeError):
    """A local server could not start; the message says why and what to do."""


def free_port() -> int:
    """A port free for TCP and UDP on 127.0.0.1 and ::1."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        held: list[socket.socket] = []
        try:
            for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    sock = socket.socket(family, kind)
                    held.append(sock)
                    sock.bind((address, port))
            return port
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise LocalServerError("no free port found on loopback")


def _wait(check: object, what: str, timeout: float, pid: int | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if pid is not None and not alive(pid):
            raise LocalServerError(f"{what} exited before it was ready")
        try:
            if check():  # type: ignore[operator]
                return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.05)
    raise LocalServerError(f"{what} not ready after {timeout}s: {last}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie child has exited already
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    return True


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM one PID we started, wait, then SIGKILL it if it will not go."""
    if not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
        conn.sendall(b"*1\r\n$4\r\nPING\r\n")
        return conn.recv(64).startswith(b"+PONG")


def start_redis(port: int, folder: Path, detach: bool = False) -> int:
    """Debian's redis-server on 127.0.0.1:port, no persistence; returns its PID when ready."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        raise LocalServerError("redis-server is not installed: run `make test` (it installs "
                               "Debian's redis-server), or apt-get install redis-server")
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / "redis.log", "ab")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(folder), "--protected-mode", "no"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=detach)
    _wait(lambda: redis_ping(port), f"redis-server on port {port}", 15, process.pid)
    return process.pid


def start_kafka(detach: bool = False) -> tuple[str, Path, int]:
    """A single-node Kafka from Maven jars (tools/kafka); returns (bootstrap, run dir, PID)."""
    script = KAFKA_TOOLS / "kafka-up.sh"
    if shutil.which("java") is None or shutil.which("mvn") is None:
        raise LocalServerError("Kafka needs java and mvn on PATH (Java 17 and Maven)")
    env = {**os.environ, "KAFKA_PYTHON": sys.executable,
           "KAFKA_PORT": str(free_port()), "KAFKA_CONTROLLER_PORT": str(free_port())}
    result = subprocess.run([str(script)], capture_output=True, text=True, env=env,
                            start_new_session=detach, timeout=240)
    if result.returncode != 0:
        raise LocalServerError(f"Kafka did not start: {result.stderr[-2000:]}")
    fields = dict(kv.split("=", 1) for kv in result.stdout.strip().splitlines()[-1].split())
    run = Path(fields["KAFKA_RUN"])
    return fields["KAFKA_BOOTSTRAP"], run, int((run / "kafka.pid").read_text().strip())


def stop_kafka(run: Path) -> None:
    subprocess.run([str(KAFKA_TOOLS / "kafka-down.sh"), str(run)], capture_output=True,
                   timeout=60, check=False)


def start_meridian(args: list[str], log: Path, env: dict[str, str] | None = None,
                   detach: bool = False) -> int:
    """A `meridian` subcommand in the background, its output to `log`; returns its PID."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen([sys.executable, "-m", "services.cli", *args], cwd=ROOT,
                               stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               env={**os.environ, **(env or {})}, start_new_session=detach)
    return process.pid


def wait_http(url: str, timeout: float = 30.0, pid: int | None = None) -> None:
    import urllib.request

    def ok() -> bool:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)

    _wait(ok, url, timeout, pid)
