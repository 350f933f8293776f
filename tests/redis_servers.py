"""Real Redis servers for tests: one server, or a 3-master Redis Cluster, on free loopback ports.

Where they come from, first that applies:
- `MERIDIAN_TEST_REDIS_URL` / `MERIDIAN_TEST_REDIS_CLUSTER_URL`: existing servers (they are
  flushed between tests, so point them at nothing you keep);
- testcontainers' Redis, for the single server, when a Docker engine answers;
- Debian's `redis-server` binary (installed by `make test`), started here on 127.0.0.1 with no
  persistence and its files in a temporary folder, and stopped by its PID.

Every helper waits until the server answers before it returns and stops only what it started.
A missing `redis-server` binary is an error that says how to install it, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import docker_answers, stop_process

ENV_URL = "MERIDIAN_TEST_REDIS_URL"
ENV_CLUSTER_URL = "MERIDIAN_TEST_REDIS_CLUSTER_URL"
MISSING = ("redis-server was not found on PATH: the store tests need a real Redis. Run `make "
           "test` (it installs Debian's redis-server and redis-tools), or point {env} at a "
           "running server.")


class RedisServerError(RuntimeError):
    """A test Redis could not be started; the message says why and what to do."""


def redis_binary(name: str = "redis-server", env: str = ENV_URL) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        raise RedisServerError(MISSING.format(env=env).replace("redis-server", name, 1))
    return path


def free_redis_port(bus: bool = False) -> int:
    """A free TCP port on 127.0.0.1; with `bus`, port + 10000 (the cluster bus) is free too."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if not bus:
            return port
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as other:
                other.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RedisServerError("no free port pair found on 127.0.0.1")


def redis_command(port: int, *args: str, host: str = "127.0.0.1", timeout: float = 1.0) -> bytes:
    """Send one command in RESP and return the raw reply (enough for PING and INFO checks)."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args)
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(payload)
        data = b""
        while True:
            chunk = conn.recv(65536)
            data += chunk
            if not chunk or _complete(data):
                return data


def _complete(reply: bytes) -> bool:
    if reply[:1] in (b"+", b"-", b":"):
        return reply.endswith(b"\r\n")
    if reply[:1] == b"$":
        head, _, body = reply.partition(b"\r\n")
        return int(head[1:]) < 0 or len(body) >= int(head[1:]) + 2
    return reply.endswith(b"\r\n")


@dataclass
class RedisServer:
    """A redis-server this process started; `url` reaches it."""

    process: subprocess.Popen[bytes]
    port: int
    folder: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _wait_for(check: str, port: int, process: subprocess.Popen[bytes], folder: Path,
              timeout: float, want: bytes) -> None:
    deadline = time.monotonic() + timeout
    last = b""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (folder / "redis.log").read_text(errors="replace")[-2000:]
            raise RedisServerError(
                f"redis-server on port {port} exited with {process.returncode}:\n{log}")
        try:
            last = redis_command(port, *check.split())
            if want in last:
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise RedisServerError(f"redis-server on port {port} did not answer {check} with "
                           f"{want!r} within {timeout}s (last reply {last[:200]!r})")


def start_redis(folder: Path, *extra: str, port: int | None = None, bus: bool = False,
                timeout: float = 10.0) -> RedisServer:
    """Start redis-server on 127.0.0.1 (no persistence, files in `folder`); PING-ready."""
    binary = redis_binary()
    port = port or free_redis_port(bus)
    folder.mkdir(parents=True, exist_ok=True)
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(folder), "--logfile", "redis.log",
               "--daemonize", "no", *extra]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT, cwd=folder)
    try:
        _wait_for("PING", port, process, folder, timeout, b"+PONG")
    except BaseException:
        stop_process(process)
        raise
    return RedisServer(process, port, folder)


@contextlib.contextmanager
def redis_server(folder: Path, *extra: str) -> Iterator[RedisServer]:
    server = start_redis(folder, *extra)
    try:
        yield server
    finally:
        stop_process(server.process)


@dataclass
class LocalCluster:
    """Three masters on 127.0.0.1, all 16384 slots covered; `url` is a redis+cluster:// URL."""

    servers: list[RedisServer] = field(default_factory=list)

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)


@contextlib.contextmanager
def redis_cluster(folder: Path, masters: int = 3, timeout: float = 30.0) -> Iterator[LocalCluster]:
    """A Redis Cluster of `masters` masters, no replicas, ready (cluster_state:ok) when it yields."""
    cli = redis_binary("redis-cli")
    cluster = LocalCluster()
    try:
        for n in range(masters):
            node = folder / f"node{n}"
            cluster.servers.append(start_redis(
                node, "--cluster-enabled", "yes", "--cluster-config-file", str(node / "nodes.conf"),
                "--cluster-node-timeout", "2000", bus=True))
        create = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in cluster.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        if create.returncode != 0:
            raise RedisServerError("redis-cli --cluster create failed:\n"
                                   + create.stdout.decode(errors="replace")[-2000:]
                                   + create.stderr.decode(errors="replace")[-2000:])
        for server in cluster.servers:
            _wait_for("CLUSTER INFO", server.port, server.process, server.folder, timeout,
                      b"cluster_state:ok")
        yield cluster
    finally:
        for server in cluster.servers:
            stop_process(server.process)


@contextlib.contextmanager
def single_redis(folder: Path) -> Iterator[str]:
    """A URL of one Redis for the tests: the environment's, a container's, or a local binary's."""
    existing = os.environ.get(ENV_URL)
    if existing:
        yield existing
        return
    if docker_answers():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7.0") as container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"
        return
    with redis_server(folder) as server:
        yield server.url


@contextlib.contextmanager
def cluster_redis(folder: Path) -> Iterator[str]:
    """A redis+cluster:// URL: the environment's cluster, or three local masters."""
    existing = os.environ.get(ENV_CLUSTER_URL)
    if existing:
        yield existing
        return
    with redis_cluster(folder) as cluster:
        yield cluster.url
