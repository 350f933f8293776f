"""Many processes per node: `meridian serve --workers 2` on one port over one Redis store.

A peer announced through one worker process is returned by the other, over HTTP; UDP works
through the SO_REUSEPORT sockets whichever worker the kernel picks; a worker killed is
started again by the supervisor while the other keeps serving.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.core.model import AnnounceRequest
from tests.clients import HttpClient, UdpClient
from tests.redis_servers import single_redis
from tests.servers import MERIDIAN, ROOT, free_port, stop_process, wait_for_http


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with single_redis(Path(tmp_path_factory.mktemp("redis-workers"))) as url:
        port = free_port()
        log = tmp_path_factory.mktemp("workers") / "serve.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [*MERIDIAN, "serve", "--host", "127.0.0.1", "--port", str(port), "--store", url,
                 "--workers", "2"], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                env={**os.environ, "MERIDIAN_UDP_SECRET": "workers-test-secret-0123456789"})
        try:
            wait_for_http(f"http://127.0.0.1:{port}/ready", process=process)
            yield port
        finally:
            assert stop_process(process) == 0, log.read_text()


def client_of_each_worker(port: int) -> dict[int, HttpClient]:
    """Keep-alive clients, one bound to each worker (told apart by /health's pid)."""
    found: dict[int, HttpClient] = {}
    deadline = time.monotonic() + 20
    while len(found) < 2 and time.monotonic() < deadline:
        client = HttpClient(f"http://127.0.0.1:{port}")
        pid = client.raw("/health").json()["pid"]
        if pid in found:
            client.close()
        else:
            found[pid] = client
    assert len(found) == 2, "never reached a second worker"
    return found


def test_a_peer_announced_to_one_worker_is_returned_by_the_other(workers: int) -> None:
    clients = client_of_each_worker(workers)
    (pid_a, a), (pid_b, b) = clients.items()
    try:
        info_hash = os.urandom(20)
        assert a.raw("/health").json()["pid"] == pid_a  # still the same connection
        a.announce(AnnounceRequest(info_hash, b"A" * 20, 40001, left=0))
        answer = b.announce(AnnounceRequest(info_hash, b"B" * 20, 40002, left=10))
        assert b.raw("/health").json()["pid"] == pid_b
        assert [p.port for p in answer.peers] == [40001]
    finally:
        for client in clients.values():
            client.close()


def test_udp_across_workers(workers: int) -> None:
    info_hash = os.urandom(20)
    sockets = [UdpClient("127.0.0.1", workers) for _ in range(8)]  # many source ports
    try:
        for n, client in enumerate(sockets):
            client.announce(AnnounceRequest(info_hash, bytes([n]) * 20, 41000 + n, left=5))
        answer = sockets[0].announce(AnnounceRequest(info_hash, bytes([0]) * 20, 41000, left=5))
        assert sorted(p.port for p in answer.peers) == [41000 + n for n in range(1, 8)]
    finally:
        for client in sockets:
            client.close()


def test_a_killed_worker_is_replaced_and_the_other_keeps_serving(workers: int) -> None:
    clients = client_of_each_worker(workers)
    victim, survivor = list(clients)
    try:
        os.kill(victim, signal.SIGKILL)
        assert clients[survivor].raw("/health").status_code == 200
        deadline = time.monotonic() + 20
        pids: set[int] = set()
        while time.monotonic() < deadline and (len(pids) < 2 or victim in pids):
            try:
                pids.add(httpx.get(f"http://127.0.0.1:{workers}/health").json()["pid"])
            except httpx.HTTPError:
                pass  # a client that retries succeeds
            pids.discard(victim)
        assert len(pids) == 2 and victim not in pids
    finally:
        for client in clients.values():
            client.close()
