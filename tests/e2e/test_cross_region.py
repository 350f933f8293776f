"""A real BitTorrent transfer across regions: the seeder announces only to eu, the
downloader only to us, and the download completes with identical bytes. The downloader can
only have learned the seeder through Kafka and the us reconciler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.core.model import SwarmStats
from tests.clients import HttpClient
from tests.e2e.clients import lt_session, make_torrent, wait_until
from tests.e2e.test_transfer import READY_TIMEOUT, assert_same_bytes, new_swarm

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
FROM_TRACKER = 1


def test_seeder_in_eu_downloader_in_us(sandbox_regions: dict[str, Any], tmp_path: Path) -> None:
    eu = sandbox_regions["regions"]["eu"]["http"]
    us = sandbox_regions["regions"]["us"]["http"]
    swarm = new_swarm(tmp_path, eu)  # the seeder's torrent names only eu
    us_torrent = tmp_path / "us.torrent"
    assert make_torrent(swarm.payload, us, us_torrent) == swarm.info_hash  # same info dict

    def scrape_us() -> SwarmStats:
        client = HttpClient(us.rsplit("/", 1)[0])
        try:
            return client.scrape([swarm.info_hash])[swarm.info_hash]
        finally:
            client.close()

    with lt_session("seeder", swarm.torrent, swarm.seed_dir, "127.0.0.1:0", swarm.logs) as seed:
        seed.wait_for("seeding", READY_TIMEOUT)
        seed.wait_for("tracker_reply", READY_TIMEOUT)
        seed_port = seed.listen_port()
        # The downloader asks us only once per interval, so start it when us has merged the
        # seeder (through eu's topic and the us reconciler), as a client arriving later would.
        wait_until(lambda: scrape_us().complete == 1, 30, "the eu seeder merged into us")
        with lt_session("leecher", us_torrent, tmp_path / "leech", "127.0.0.1:0",
                        swarm.logs) as leech:
            leech.wait_for("seeding", 60)
            assert_same_bytes(swarm, tmp_path / "leech" / swarm.payload.name)
            replies = leech.named("tracker_reply")
            assert replies and all(r["url"] == us for r in replies), leech.describe()
            peer = leech.wait_for("peer", 5, match=lambda e: e["port"] == seed_port)
            assert peer["source"] == FROM_TRACKER, leech.describe()
