"""The request stream: what a tracker sees from a population of real clients, without the clients.

The torrent set is N info hashes ranked by popularity; a torrent of rank r draws peers in
proportion to 1 / r**s (Zipf), so a few torrents hold most peers and most announces, and the long
tail holds one or two. Each of M peers (one (127.0.0.1, port) identity per peer, as trackers key
peers) is idle or on one torrent: an idle peer starts on a torrent drawn by popularity, as a
seeder with probability `seeder_share`; a started peer re-announces (update), a leecher may
complete, and any peer may stop, after which it starts again elsewhere. Scrapes ask for a few
torrents drawn by popularity.

Everything here is pure and seeded: the same shape and seed give the same torrent set and the
same request sequence, so runs against different trackers see the same traffic.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass

from services.core.model import AnnounceRequest, Event

FIRST_PORT = 1024
MAX_PEERS = 65535 - FIRST_PORT  # one loopback address holds this many (ip, port) identities
TORRENT_BYTES = 1 << 30
PEER_ID_PREFIX = b"-ML0001-"  # Azureus-style client id: "ML" (Meridian loadtest), version 0.0.0.1


@dataclass(frozen=True, slots=True)
class WorkloadShape:
    """The shape of the traffic; every field has a command-line flag of the same name."""

    torrents: int = 1000
    peers: int = 10_000
    seed: int = 1
    zipf_exponent: float = 1.0
    seeder_share: float = 0.3  # of peers that start as seeders (left = 0)
    numwant: int = 50
    scrape_share: float = 0.1  # of requests that are scrapes
    scrape_hashes: int = 3  # info hashes per scrape
    stopped_share: float = 0.05  # of a started peer's announces that are `stopped`
    completed_share: float = 0.05  # of a leecher's announces that are `completed`

    def check(self) -> None:
        """Raise ValueError naming the first field out of range."""
        if self.torrents < 1:
            raise ValueError("--torrents must be at least 1")
        if not 1 <= self.peers <= MAX_PEERS:
            raise ValueError(f"--peers must be 1 to {MAX_PEERS}: every peer is one port on "
                             "127.0.0.1, as a tracker keys peers by (ip, port)")
        if self.zipf_exponent < 0:
            raise ValueError("--zipf must be 0 (uniform) or more")
        for name in ("seeder_share", "scrape_share", "stopped_share", "completed_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be between 0 and 1")
        if self.stopped_share + self.completed_share > 1.0:
            raise ValueError("--stopped-share plus --completed-share must not exceed 1")
        if self.numwant < 0:
            raise ValueError("--numwant must be 0 or more")
        if not 1 <= self.scrape_hashes <= 74:
            raise ValueError("--scrape-hashes must be 1 to 74 (what one UDP answer holds)")


def info_hashes(torrents: int, seed: int) -> list[bytes]:
    """The torrent set, most popular first: SHA-1 of a seeded name, stable across Pythons."""
    return [hashlib.sha1(b"meridian-loadtest torrent %d of seed %d" % (rank, seed)).digest()
            for rank in range(torrents)]


def zipf_cumulative(torrents: int, exponent: float) -> list[float]:
    """Cumulative popularity weights for `random.choices(cum_weights=...)`."""
    return list(itertools.accumulate(1.0 / (rank + 1) ** exponent for rank in range(torrents)))


def peer_port(index: int) -> int:
    return FIRST_PORT + index


def peer_id(port: int) -> bytes:
    return PEER_ID_PREFIX + b"%012d" % port


@dataclass(frozen=True, slots=True)
class Scrape:
    """A planned scrape of these torrents (no repeats)."""

    info_hashes: tuple[bytes, ...]


Planned = AnnounceRequest | Scrape


class Traffic:
    """The request stream of one worker; worker k of n owns peers k, k+n, k+2n, ...

    Owning disjoint peers keeps each peer's events in order within one process.
    """

    def __init__(self, shape: WorkloadShape, worker: int = 0, workers: int = 1) -> None:
        shape.check()
        self.shape = shape
        self.rng = random.Random(f"meridian-loadtest/{shape.seed}/{worker}/{workers}")
        self.hashes = info_hashes(shape.torrents, shape.seed)
        self.cumulative = zipf_cumulative(shape.torrents, shape.zipf_exponent)
        self.ports = [peer_port(i) for i in range(worker, shape.peers, workers)]
        if not self.ports:
            raise ValueError(f"{workers} workers need at least {workers} peers")
        self.torrent: list[int] = [-1] * len(self.ports)  # -1: idle
        self.left: list[int] = [0] * len(self.ports)
        self.events = dict.fromkeys(("started", "update", "completed", "stopped", "scrape"), 0)

    def _popular(self, k: int = 1) -> list[int]:
        return self.rng.choices(range(self.shape.torrents), cum_weights=self.cumulative, k=k)

    def next(self) -> Planned:
        shape = self.shape
        rng = self.rng
        if shape.scrape_share and rng.random() < shape.scrape_share:
            self.events["scrape"] += 1
            ranks = dict.fromkeys(self._popular(shape.scrape_hashes))
            return Scrape(tuple(self.hashes[r] for r in ranks))
        slot = rng.randrange(len(self.ports))
        numwant = shape.numwant
        if self.torrent[slot] < 0:
            self.torrent[slot] = self._popular()[0]
            self.left[slot] = 0 if rng.random() < shape.seeder_share else rng.randrange(
                1, TORRENT_BYTES)
            event = Event.STARTED
        else:
            draw = rng.random()
            if draw < shape.stopped_share:
                event, numwant = Event.STOPPED, 0
            elif self.left[slot] and draw < shape.stopped_share + shape.completed_share:
                event = Event.COMPLETED
                self.left[slot] = 0
            else:
                event = Event.UPDATE
        self.events[event.value] += 1
        port = self.ports[slot]
        left = self.left[slot]
        request = AnnounceRequest(
            info_hash=self.hashes[self.torrent[slot]],
            peer_id=peer_id(port),
            port=port,
            uploaded=0,
            downloaded=TORRENT_BYTES - left if left else 0,
            left=left,
            event=event,
            numwant=numwant,
            key=b"%08x" % port,
        )
        if event is Event.STOPPED:
            self.torrent[slot] = -1
        return request
