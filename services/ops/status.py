"""What an SRE checks during an incident: are a region's nodes ready, and do regions hold the
same swarms. Used by `meridian ops ready` and `meridian ops compare`, and by the runbooks."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from services.core.model import SwarmStats
from services.settings import Settings
from services.stores import open_store


@dataclass(frozen=True)
class NodeReadiness:
    url: str
    ready: bool
    detail: str


def ready(base_urls: list[str], timeout: float = 2.0) -> list[NodeReadiness]:
    """GET <base>/ready on each node; a node that does not answer is not ready."""
    out = []
    for base in base_urls:
        url = base.rstrip("/").removesuffix("/announce") + "/ready"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                body = response.read().decode()
                out.append(NodeReadiness(url, True, body))
        except urllib.error.HTTPError as exc:
            out.append(NodeReadiness(url, False, exc.read().decode(errors="replace")))
        except OSError as exc:
            out.append(NodeReadiness(url, False, f"no answer: {exc}"))
    return out


async def swarms(store_url: str, limit: int) -> dict[bytes, SwarmStats]:
    """Every torrent's counts in one region's store (bounded by `limit`)."""
    store = open_store(Settings.load(store=store_url))
    await store.start()
    try:
        return await store.full_scrape(limit, time.time())
    finally:
        await store.close()


@dataclass(frozen=True)
class Comparison:
    torrents: dict[str, int]
    peers: dict[str, int]
    differing: list[str]  # hex info hashes whose counts differ between stores

    @property
    def equal(self) -> bool:
        return not self.differing

    def to_json(self) -> str:
        return json.dumps({"torrents": self.torrents, "peers": self.peers,
                           "differing": self.differing[:20], "equal": self.equal})


async def compare(store_urls: list[str], limit: int = 1_000_000) -> Comparison:
    views = {url: await swarms(url, limit) for url in store_urls}
    hashes = set().union(*(set(v) for v in views.values()))
    differing = sorted(h.hex() for h in hashes
                       if len({(v.get(h, SwarmStats()).complete, v.get(h, SwarmStats()).incomplete)
                               for v in views.values()}) > 1)
    return Comparison(
        torrents={url: sum(1 for s in v.values() if s.complete + s.incomplete)
                  for url, v in views.items()},
        peers={url: sum(s.complete + s.incomplete for s in v.values())
               for url, v in views.items()},
        differing=differing)
