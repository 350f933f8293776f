"""Helpers for driving real BitTorrent clients against a running Meridian tracker.

Payloads and torrents made at test time, libtorrent sessions run as `lt_worker.py` processes
(their JSON events read on a thread), and the tracker's own view (scrape, /metrics) read over
HTTP. Every process started here is stopped by its PID; nothing listens beyond loopback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libtorrent as lt
import pytest

from tests.servers import RunningTracker, stop_process

WORKER = Path(__file__).resolve().parent / "lt_worker.py"
PIECE_SIZE = 256 * 1024
Event = dict[str, Any]


# --- payloads and torrents -------------------------------------------------------------------

def make_payload(directory: Path, size: int, name: str = "payload.bin") -> Path:
    """`size` random bytes in directory/name."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(os.urandom(size))
    return path


def make_torrent(payload: Path, announce_url: str, out: Path) -> bytes:
    """A v1 torrent of one file whose only tracker is `announce_url`; returns its info hash.

    v1 only, so every client here (aria2 1.36, Transmission 3.00) reads it and there is one
    info hash per torrent, hence one swarm on the tracker.
    """
    creator = lt.create_torrent(lt.list_files(str(payload)), PIECE_SIZE,
                                flags=lt.create_torrent.v1_only)
    creator.add_tracker(announce_url)
    creator.set_creator("meridian e2e tests")
    lt.set_piece_hashes(creator, str(payload.parent))
    out.write_bytes(lt.bencode(creator.generate()))
    return bytes.fromhex(str(lt.torrent_info(str(out)).info_hashes().v1))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def require_binary(name: str) -> str:
    """The path of a client binary, or a failure saying how to install it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run `make test`, which installs it "
                    "(tools/install-system-deps.sh)", pytrace=False)
    return path


# --- waiting ---------------------------------------------------------------------------------

def wait_until(condition: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.1) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} "
                                 f"(last value: {last!r})")
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    text = path.read_text(errors="replace").replace("\r", "\n")
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


# --- the tracker's view ----------------------------------------------------------------------

def scrape(tracker: RunningTracker, info_hash: bytes, host: str = "127.0.0.1") -> dict[str, int]:
    """complete / incomplete / downloaded for one torrent, from the tracker's HTTP /scrape."""
    url = f"{tracker.base(host)}/scrape?info_hash={urllib.parse.quote(info_hash, safe='')}"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read()
    decoded: Any = lt.bdecode(body)
    assert isinstance(decoded, dict) and b"files" in decoded, f"bad scrape answer: {body!r}"
    stats: dict[bytes, int] = decoded[b"files"].get(info_hash, {})
    return {key.decode(): int(value) for key, value in stats.items()}


class Mismatch:
    """A falsy answer to a `wait_until` condition that still shows what was seen."""

    def __init__(self, seen: object) -> None:
        self.seen = seen

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return repr(self.seen)


def scrape_is(tracker: RunningTracker, info_hash: bytes, **expected: int
              ) -> Callable[[], dict[str, int] | Mismatch]:
    """A condition for `wait_until`: the scrape has these values (returns the scrape)."""
    def check() -> dict[str, int] | Mismatch:
        stats = scrape(tracker, info_hash)
        return stats if all(stats.get(k) == v for k, v in expected.items()) else Mismatch(stats)
    return check


def requests_total(tracker: RunningTracker, protocol: str, action: str) -> float:
    """meridian_requests_total{protocol, action, result="ok"} from /metrics."""
    with urllib.request.urlopen(tracker.base() + "/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        match = re.match(r"meridian_requests_total\{(.*)\} (\S+)$", line)
        if match is None:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if labels == {"protocol": protocol, "action": action, "result": "ok"}:
            total += float(match.group(2))
    return total


# --- libtorrent sessions in their own processes ----------------------------------------------

class LtSession:
    """A `lt_worker.py` process: one libtorrent session with one torrent, and its events."""

    def __init__(self, name: str, torrent: Path, save_dir: Path, listen: str,
                 log_dir: Path) -> None:
        self.name = name
        save_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = log_dir / f"{name}.stderr.log"
        self.events: list[Event] = []
        self._changed = threading.Condition()
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, str(WORKER), str(torrent), str(save_dir), "--listen", listen],
                stdout=subprocess.PIPE, stderr=stderr)
        self._reader = threading.Thread(target=self._read, name=f"{name}-events", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "garbage", "line": line.decode(errors="replace")}
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def named(self, name: str) -> list[Event]:
        with self._changed:
            return [e for e in self.events if e["event"] == name]

    def wait_for(self, name: str, timeout: float,
                 match: Callable[[Event], bool] = lambda e: True) -> Event:
        """The first event called `name` that `match`es; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if event["event"] == name and match(event):
                        return event
                remaining = deadline - time.monotonic()
                exited = not self._reader.is_alive()
                if remaining <= 0 or exited:
                    break
                self._changed.wait(min(remaining, 0.5))
        why = "exited" if exited else f"timed out after {timeout}s"
        raise AssertionError(f"libtorrent {self.name} {why} waiting for {name!r}.\n"
                             f"events: {self.events}\nstderr:\n{tail(self.stderr_path)}")

    def listen_port(self, timeout: float = 10) -> int:
        return int(self.wait_for("listening", timeout)["port"])

    def describe(self) -> str:
        return f"libtorrent {self.name} events: {self.events}"

    def stop(self) -> int:
        """SIGTERM (the worker then sends its `stopped` announce) and wait; by PID only."""
        code = stop_process(self.process)
        self._reader.join(5)
        return code


@contextlib.contextmanager
def lt_session(name: str, torrent: Path, save_dir: Path, listen: str,
               log_dir: Path) -> Iterator[LtSession]:
    session = LtSession(name, torrent, save_dir, listen, log_dir)
    try:
        yield session
    finally:
        session.stop()


@contextlib.contextmanager
def started(args: list[str], log: Path, cwd: Path | None = None,
            stop: Callable[[subprocess.Popen[bytes]], object] = stop_process,
            ) -> Iterator[subprocess.Popen[bytes]]:
    """Run a client binary with its output in `log`; stop it by PID when the block ends."""
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                   stdin=subprocess.DEVNULL)
    try:
        yield process
    finally:
        stop(process)
