"""Real BitTorrent clients move real bytes through swarms that only Meridian knows about.

Each test makes 4 MiB of random data and a v1 torrent whose only tracker is a running
`meridian serve`, seeds it with libtorrent in one process and downloads it with another client
in another process: libtorrent over HTTP and UDP, on IPv4 and IPv6 loopback; aria2 over HTTP and
UDP; Transmission over HTTP. DHT, LSD, PEX, UPnP and NAT-PMP are off everywhere, so the tracker
is the only way the peers can find each other. Each test proves that the downloaded file has the
seeder's sha256, that the downloader's peer came from the tracker, and that the tracker's scrape
counted the swarm as it changed (started, completed, and stopped where the client sends it).
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.clients import (
    LtSession,
    lt_session,
    make_payload,
    make_torrent,
    requests_total,
    require_binary,
    scrape_is,
    sha256,
    started,
    tail,
    wait_until,
)
from tests.servers import RunningTracker, free_port, stop_process

PAYLOAD_SIZE = 4 * 1024 * 1024
READY_TIMEOUT = 15.0     # a client is up and has announced
TRANSFER_TIMEOUT = 45.0  # the whole payload has arrived
SETTLE_TIMEOUT = 10.0    # the tracker has seen a completed or stopped announce
# libtorrent's peer_source_flags
FROM_TRACKER = 1
INCOMING = 32

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]  # a backstop; a test takes 1-16 s


@dataclass(frozen=True)
class Swarm:
    """One torrent of fresh random data; the seeder's copy is in seed_dir."""

    payload: Path
    digest: str
    torrent: Path
    info_hash: bytes
    seed_dir: Path
    logs: Path


def new_swarm(tmp_path: Path, announce_url: str) -> Swarm:
    seed_dir = tmp_path / "seed"
    payload = make_payload(seed_dir, PAYLOAD_SIZE)
    torrent = tmp_path / "payload.torrent"
    info_hash = make_torrent(payload, announce_url, torrent)
    logs = tmp_path / "logs"
    logs.mkdir()
    return Swarm(payload, sha256(payload), torrent, info_hash, seed_dir, logs)


@contextlib.contextmanager
def seeding(swarm: Swarm, listen: str) -> Iterator[LtSession]:
    """A libtorrent seeder that has checked its data and had an answer from the tracker."""
    with lt_session("seeder", swarm.torrent, swarm.seed_dir, listen, swarm.logs) as seed:
        seed.wait_for("seeding", READY_TIMEOUT)
        seed.wait_for("tracker_reply", READY_TIMEOUT)
        assert not seed.named("tracker_error"), seed.describe()
        yield seed


def assert_same_bytes(swarm: Swarm, downloaded: Path) -> None:
    """The file on disk equals the seeder's. A client reports "seeding" once every piece
    passed its hash check, which can be before its disk writes reach the file (seen under
    load with libtorrent), so the file gets a bounded moment to settle."""
    assert downloaded.is_file(), f"{downloaded} was not written"
    assert downloaded.stat().st_size == PAYLOAD_SIZE
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while sha256(downloaded) != swarm.digest:
        assert time.monotonic() < deadline, "downloaded bytes differ from the seeder's"
        time.sleep(0.2)


# --- libtorrent to libtorrent ----------------------------------------------------------------

@pytest.mark.parametrize(
    ("protocol", "host"),
    [("http", "127.0.0.1"), ("udp", "127.0.0.1"), ("http", "::1"), ("udp", "::1")],
    ids=["http-ipv4", "udp-ipv4", "http-ipv6", "udp-ipv6"])
def test_libtorrent_downloads_from_libtorrent(tracker: RunningTracker, tmp_path: Path,
                                              protocol: str, host: str) -> None:
    url = tracker.announce_url(host) if protocol == "http" else tracker.udp_url(host)
    listen = "[::1]:0" if ":" in host else "127.0.0.1:0"
    swarm = new_swarm(tmp_path, url)
    announces_before = requests_total(tracker, protocol, "announce")

    with seeding(swarm, listen) as seed:
        seed_port = seed.listen_port()
        wait_until(scrape_is(tracker, swarm.info_hash, complete=1, incomplete=0),
                   SETTLE_TIMEOUT, "the seeder in the scrape")

        with lt_session("leecher", swarm.torrent, tmp_path / "leech", listen,
                        swarm.logs) as leech:
            leech.wait_for("seeding", TRANSFER_TIMEOUT)
            assert_same_bytes(swarm, tmp_path / "leech" / swarm.payload.name)

            # The leecher's first announce was answered with the seeder, and that is the peer
            # it downloaded from: its source is the tracker and nothing else.
            first = leech.named("tracker_reply")[0]
            assert first["url"] == url and first["num_peers"] == 1, leech.describe()
            peer = leech.wait_for("peer", 5, match=lambda e: e["port"] == seed_port)
            assert peer["ip"] == host and peer["source"] == FROM_TRACKER, leech.describe()
            assert not leech.named("tracker_error"), leech.describe()

            # libtorrent announced `completed`: two seeders now, one finished download.
            wait_until(scrape_is(tracker, swarm.info_hash, complete=2, incomplete=0,
                                 downloaded=1), SETTLE_TIMEOUT, "the completed announce")
            # seeder started, leecher started, leecher completed; all over this protocol
            assert requests_total(tracker, protocol, "announce") - announces_before >= 3

            leech.stop()
            wait_until(scrape_is(tracker, swarm.info_hash, complete=1, downloaded=1),
                       SETTLE_TIMEOUT, "the leecher's stopped announce")
        seed.stop()
        wait_until(scrape_is(tracker, swarm.info_hash, complete=0, incomplete=0, downloaded=1),
                   SETTLE_TIMEOUT, "the seeder's stopped announce")


# --- aria2 downloads from libtorrent ---------------------------------------------------------

def aria2_command(aria2c: str, swarm: Swarm, download_dir: Path, protocol: str,
                  tmp_path: Path) -> list[str]:
    """aria2c downloading the torrent once and exiting, every socket on 127.0.0.1.

    aria2 talks to UDP trackers only while its DHT is on, so for UDP the DHT is enabled with a
    fresh DHT file, a loopback port and no entry points: it has no node to talk to.
    """
    command = [
        aria2c, "--no-conf=true", f"--dir={download_dir}", "--interface=127.0.0.1",
        "--disable-ipv6=true", f"--listen-port={free_port(both=False)}",
        "--bt-enable-lpd=false", "--enable-peer-exchange=false", "--enable-dht6=false",
        "--seed-time=0", "--file-allocation=none", "--bt-save-metadata=false",
        "--summary-interval=0", "--console-log-level=warn",
        f"--log={swarm.logs / 'aria2.log'}", "--log-level=info",
    ]
    if protocol == "udp":
        dht_port = free_port(socket.SOCK_DGRAM, both=False)
        command += ["--enable-dht=true", f"--dht-file-path={tmp_path / 'aria2-dht.dat'}",
                    f"--dht-listen-port={dht_port}"]
    else:
        command += ["--enable-dht=false"]
    return [*command, str(swarm.torrent)]


@pytest.mark.parametrize("protocol", ["http", "udp"])
def test_aria2_downloads_from_libtorrent(tracker: RunningTracker, tmp_path: Path,
                                         protocol: str) -> None:
    aria2c = require_binary("aria2c")
    url = tracker.announce_url() if protocol == "http" else tracker.udp_url()
    swarm = new_swarm(tmp_path, url)
    download_dir = tmp_path / "aria2"
    output = swarm.logs / "aria2.out"
    announces_before = requests_total(tracker, protocol, "announce")

    with seeding(swarm, "127.0.0.1:0") as seed:
        wait_until(scrape_is(tracker, swarm.info_hash, complete=1, incomplete=0),
                   SETTLE_TIMEOUT, "the seeder in the scrape")
        with started(aria2_command(aria2c, swarm, download_dir, protocol, tmp_path),
                     output) as aria2:
            try:
                code = aria2.wait(TRANSFER_TIMEOUT)
            except subprocess.TimeoutExpired:
                pytest.fail(f"aria2c did not finish in {TRANSFER_TIMEOUT}s:\n{tail(output)}\n"
                            f"{tail(swarm.logs / 'aria2.log')}\n{seed.describe()}")
            assert code == 0, f"aria2c exited {code}:\n{tail(output)}"
        assert_same_bytes(swarm, download_dir / swarm.payload.name)

        # The seeder announced first and got no peers, so its only peer is one that dialled it:
        # aria2, which can only have found it through the tracker. (libtorrent names aria2's
        # peer id prefix "A2-1-36-0-" as "ABC 2.1.36", so the client name is not checked.)
        assert seed.named("tracker_reply")[0]["num_peers"] == 0, seed.describe()
        peers = seed.named("peer")
        assert peers, seed.describe()
        assert all(p["ip"] == "127.0.0.1" and p["source"] == INCOMING for p in peers), \
            seed.describe()

        # aria2 announced `started`, then on exit `stopped` (with left=0; with --seed-time=0 it
        # sends no `completed`), so the swarm is back to the seeder alone. Seeder started, aria2
        # started, aria2 stopped: three announces over this protocol at least.
        wait_until(scrape_is(tracker, swarm.info_hash, complete=1, incomplete=0),
                   SETTLE_TIMEOUT, "aria2's stopped announce")
        assert requests_total(tracker, protocol, "announce") - announces_before >= 3


# --- Transmission downloads from libtorrent --------------------------------------------------

TRANSMISSION_SETTINGS = {
    "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False, "utp-enabled": False,
    "port-forwarding-enabled": False, "peer-port-random-on-start": False,
    "bind-address-ipv4": "127.0.0.1", "bind-address-ipv6": "::1",
    "rpc-enabled": False, "blocklist-enabled": False, "rename-partial-files": True,
    "start-added-torrents": True, "ratio-limit-enabled": False,
}


def interrupt(process: subprocess.Popen[bytes]) -> object:
    """transmission-cli shuts down cleanly on SIGINT only (SIGTERM kills it outright)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
    return stop_process(process)


def test_transmission_downloads_from_libtorrent(tracker: RunningTracker,
                                                tmp_path: Path) -> None:
    """Transmission 3.00 never dials a loopback peer it got from a tracker (it drops 127/8 and
    ::1 as 'martian' addresses), so here the order is reversed: Transmission announces first,
    then the seeder gets it from Meridian and dials it."""
    transmission = require_binary("transmission-cli")
    swarm = new_swarm(tmp_path, tracker.announce_url())
    config = tmp_path / "transmission-config"
    config.mkdir()
    (config / "settings.json").write_text(json.dumps(TRANSMISSION_SETTINGS))
    download_dir = tmp_path / "transmission"
    download_dir.mkdir()
    port = free_port()
    output = swarm.logs / "transmission.out"
    downloaded = download_dir / swarm.payload.name

    command = [transmission, "-g", str(config), "-w", str(download_dir), "-p", str(port), "-M",
               str(swarm.torrent)]
    with started(command, output, stop=interrupt) as client:
        wait_until(scrape_is(tracker, swarm.info_hash, complete=0, incomplete=1),
                   READY_TIMEOUT, "Transmission's started announce")
        with seeding(swarm, "127.0.0.1:0") as seed:
            assert seed.named("tracker_reply")[0]["num_peers"] == 1, seed.describe()
            try:
                wait_until(lambda: downloaded.is_file() and sha256(downloaded) == swarm.digest,
                           TRANSFER_TIMEOUT, "Transmission to finish the download", interval=0.5)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nexit: {client.poll()}\n{tail(output, 5)}\n"
                                     f"{seed.describe()}") from None
            assert_same_bytes(swarm, downloaded)

            peer = seed.wait_for("peer", 5, match=lambda e: e["port"] == port)
            assert peer["ip"] == "127.0.0.1" and peer["source"] == FROM_TRACKER, seed.describe()
            assert "transmission" in peer["client"].lower(), seed.describe()

            wait_until(scrape_is(tracker, swarm.info_hash, complete=2, incomplete=0,
                                 downloaded=1), SETTLE_TIMEOUT, "Transmission's completed announce")
    # No check that Transmission leaves the swarm: transmission-cli 3.00 queues its `stopped`
    # announce on SIGINT but exits before sending it (strace shows no such request).
