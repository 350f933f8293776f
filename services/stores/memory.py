"""The embedded in-process store: swarms in dictionaries, for one process without Redis.

Each swarm keeps, per address family, an index from (ip, port) to an entry and two arrays
(seeders, leechers) with swap-remove, so an upsert, a removal and a random sample of k peers
cost O(1), O(1) and O(k). A sample is a window of k peers at a random offset of those arrays
(wrapping around), and each entry keeps the peer's compact form from its first announce, so an
answer is two slices and a join. Expiry is lazy: a swarm remembers a lower bound of its
earliest deadline and is swept only when that moment has passed, which in a steady swarm is
about once per announce interval; `collect_garbage` sweeps idle swarms.

Nothing here waits, so every call finishes without yielding to the event loop (`in_process`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import operator
import random
import time
from collections.abc import Sequence

from services.core.events import AnnounceEvent
from services.core.merge import Version, record_of
from services.core.model import Event, Family, Peer, SwarmAnswer, SwarmStats, family_of

log = logging.getLogger(__name__)
_peer_of = operator.attrgetter("peer")
_compact_of = operator.attrgetter("compact")


class _Entry:
    __slots__ = ("peer", "compact", "deadline", "seeder", "pos", "version")

    def __init__(self, peer: Peer, deadline: float, seeder: bool,
                 version: Version | None = None) -> None:
        self.peer = peer
        self.compact = peer.compact()  # (ip, port) is the entry's identity: it never changes
        self.deadline = deadline
        self.seeder = seeder
        self.pos = 0
        self.version = version


class _Peers:
    """The peers of one family in one swarm."""

    __slots__ = ("index", "seeders", "leechers")

    def __init__(self) -> None:
        self.index: dict[tuple[bytes, int], _Entry] = {}
        self.seeders: list[_Entry] = []
        self.leechers: list[_Entry] = []

    def _list(self, seeder: bool) -> list[_Entry]:
        return self.seeders if seeder else self.leechers

    def _append(self, entry: _Entry) -> None:
        group = self._list(entry.seeder)
        entry.pos = len(group)
        group.append(entry)

    def _detach(self, entry: _Entry) -> None:
        group = self._list(entry.seeder)
        last = group.pop()
        if last is not entry:
            group[entry.pos] = last
            last.pos = entry.pos

    def upsert(self, peer: Peer, seeder: bool, deadline: float,
               version: Version | None = None) -> _Entry:
        endpoint = (peer.ip, peer.port)
        entry = self.index.get(endpoint)
        if entry is None:
            entry = _Entry(peer, deadline, seeder, version)
            self.index[endpoint] = entry
            self._append(entry)
            return entry
        if entry.seeder != seeder:
            self._detach(entry)
            entry.seeder = seeder
            self._append(entry)
        entry.peer = peer
        entry.deadline = deadline
        entry.version = version
        return entry

    def remove(self, endpoint: tuple[bytes, int]) -> bool:
        entry = self.index.pop(endpoint, None)
        if entry is None:
            return False
        self._detach(entry)
        return True

    def sweep(self, now: float) -> tuple[int, float]:
        """Remove expired entries; return (removed, earliest remaining deadline)."""
        expired = [e for e in self.index.values() if e.deadline <= now]
        for entry in expired:
            self.remove(entry.peer.endpoint)
        earliest = min((e.deadline for e in self.index.values()), default=math.inf)
        return len(expired), earliest

    def sample(self, numwant: int, mine: _Entry | None, seeder: bool) -> list[_Entry]:
        """Up to numwant entries other than `mine`: leechers for a seeder, anyone for a leecher.

        The pick is a window of numwant + 1 (one to spare for `mine`) at a random offset of
        the leechers-then-seeders arrays, wrapping around: every peer is equally likely to be
        in it, at the cost of array neighbours tending to come together. Swap-remove keeps
        reshuffling the arrays, and a window is two slices, where drawing numwant + 1 distinct
        indices costs twenty times more. No entry here has expired: the caller sweeps the swarm
        first whenever one may have (`_Swarm.next_expiry`).
        """
        leechers = self.leechers
        seeders: list[_Entry] = [] if seeder else self.seeders
        total = len(leechers) + len(seeders)
        if numwant <= 0 or total == 0:
            return []
        size = numwant + 1
        if total <= size:
            picks = leechers + seeders
        else:
            start = random.randrange(total)
            picks = _window(leechers, seeders, start, min(size, total - start))
            if len(picks) < size:
                picks += _window(leechers, seeders, 0, size - len(picks))
        if mine is not None and not seeder:  # a seeder's own entry is not among leechers
            try:
                picks.remove(mine)  # by identity: entries do not define equality
            except ValueError:
                pass
        del picks[numwant:]
        return picks


def _window(first: list[_Entry], second: list[_Entry], start: int, size: int) -> list[_Entry]:
    """`size` entries from `start` of first + second, without building that concatenation."""
    split = len(first)
    if start >= split:
        return second[start - split : start - split + size]
    picks = first[start : start + size]
    if len(picks) < size:
        picks += second[: size - len(picks)]
    return picks


class _Swarm:
    __slots__ = ("v4", "v6", "downloaded", "next_expiry", "last_seen", "tombstones")

    def __init__(self) -> None:
        self.v4 = _Peers()
        self.v6 = _Peers()
        self.downloaded = 0
        self.next_expiry = math.inf
        self.last_seen = 0.0
        # (ip, port) -> (version, forget-after seconds): merged `stopped` writes
        self.tombstones: dict[tuple[bytes, int], tuple[Version, float]] = {}

    def peers(self, family: Family) -> _Peers:
        return self.v4 if family is Family.IPV4 else self.v6

    def stats(self) -> SwarmStats:
        seeders = len(self.v4.seeders) + len(self.v6.seeders)
        leechers = len(self.v4.leechers) + len(self.v6.leechers)
        return SwarmStats(seeders, leechers, self.downloaded)

    def sweep(self, now: float) -> int:
        removed4, earliest4 = self.v4.sweep(now)
        removed6, earliest6 = self.v6.sweep(now)
        self.next_expiry = min(earliest4, earliest6)
        if self.tombstones:
            self.tombstones = {k: v for k, v in self.tombstones.items() if v[1] > now}
        return removed4 + removed6

    def empty(self) -> bool:
        return not self.v4.index and not self.v6.index and not self.tombstones

    def version_of(self, endpoint: tuple[bytes, int]) -> Version | None:
        entry = self.peers(family_of(endpoint[0])).index.get(endpoint)
        if entry is not None:
            return entry.version
        tombstone = self.tombstones.get(endpoint)
        return tombstone[0] if tombstone else None


class MemoryPeerStore:
    """`PeerStore` in this process's memory: the embedded default (`memory://`)."""

    # Its coroutines never wait: a frontend may run them to completion on the spot instead of
    # scheduling a task for each request (see `services.announce.udp`).
    in_process = True

    def __init__(self, peer_ttl: float, max_swarms: int = 1_000_000,
                 max_peers_per_swarm: int = 100_000, tombstone_ttl: float | None = None) -> None:
        self.peer_ttl = peer_ttl
        self.tombstone_ttl = tombstone_ttl if tombstone_ttl is not None else 2 * peer_ttl
        self.max_swarms = max_swarms
        self.max_peers_per_swarm = max_peers_per_swarm
        self._swarms: dict[bytes, _Swarm] = {}
        self._flags: dict[str, tuple[str, float]] = {}
        self.bounds_hit = {"swarms": 0, "peers_per_swarm": 0}
        self._last_bound_log = 0.0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._swarms.clear()

    async def ping(self) -> None:
        return None

    async def get_flag(self, name: str) -> str | None:
        value, until = self._flags.get(name, (None, math.inf))
        if value is not None and time.monotonic() >= until:
            del self._flags[name]
            return None
        return value

    async def set_flag(self, name: str, value: str | None, ttl: float | None = None) -> None:
        if value is None:
            self._flags.pop(name, None)
        else:
            self._flags[name] = (value, time.monotonic() + ttl if ttl else math.inf)

    def counts(self) -> tuple[int, int]:
        """(swarms, peers) held now, for metrics."""
        peers = sum(len(s.v4.index) + len(s.v6.index) for s in self._swarms.values())
        return len(self._swarms), peers

    def _bound_hit(self, which: str, info_hash: bytes) -> None:
        self.bounds_hit[which] += 1
        now = time.monotonic()
        if now - self._last_bound_log >= 60:
            self._last_bound_log = now
            limit = self.max_swarms if which == "swarms" else self.max_peers_per_swarm
            log.warning(
                "memory store bound hit: %s limit %d reached (torrent %s); new peers are "
                "answered but not stored. Raise MERIDIAN_MAX_%s or move to the Redis store.",
                which, limit, info_hash.hex(), which.upper())

    async def announce(self, info_hash: bytes, peer: Peer, event: Event, seeder: bool,
                       numwant: int, now: float, version: Version | None = None
                       ) -> SwarmAnswer:
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            if event is Event.STOPPED:
                return SwarmAnswer(SwarmStats(), ())
            if len(self._swarms) >= self.max_swarms:
                self._bound_hit("swarms", info_hash)
                return SwarmAnswer(SwarmStats(), ())
            swarm = self._swarms[info_hash] = _Swarm()
        swarm.last_seen = now
        if now >= swarm.next_expiry:
            swarm.sweep(now)
        peers = swarm.v4 if len(peer.ip) == 4 else swarm.v6
        endpoint = (peer.ip, peer.port)
        if event is Event.STOPPED:
            peers.remove(endpoint)
            if version is not None:
                swarm.tombstones[endpoint] = (version, now + self.tombstone_ttl)
            stats = swarm.stats()
            if swarm.empty() and not swarm.downloaded:
                del self._swarms[info_hash]
            return SwarmAnswer(stats, ())
        if event is Event.COMPLETED:
            swarm.downloaded += 1
        deadline = now + self.peer_ttl
        mine: _Entry | None = None
        if endpoint in peers.index or len(peers.index) < self.max_peers_per_swarm:
            mine = peers.upsert(peer, seeder, deadline, version)
            if swarm.tombstones:
                swarm.tombstones.pop(endpoint, None)
            if deadline < swarm.next_expiry:
                swarm.next_expiry = deadline
        else:
            self._bound_hit("peers_per_swarm", info_hash)
        picks = peers.sample(numwant, mine, seeder)
        return SwarmAnswer(swarm.stats(), tuple(map(_peer_of, picks)),
                           b"".join(map(_compact_of, picks)))

    def _stats(self, info_hash: bytes, now: float) -> SwarmStats:
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            return SwarmStats()
        if now >= swarm.next_expiry:
            swarm.sweep(now)
        return swarm.stats()

    async def scrape(self, info_hashes: Sequence[bytes], now: float) -> list[SwarmStats]:
        return [self._stats(h, now) for h in info_hashes]

    async def full_scrape(self, limit: int, now: float) -> dict[bytes, SwarmStats]:
        out: dict[bytes, SwarmStats] = {}
        for info_hash in list(self._swarms)[:limit]:
            out[info_hash] = self._stats(info_hash, now)
        return out

    async def apply(self, events: Sequence[AnnounceEvent], now: float) -> int:
        """Merge other regions' events (last writer wins per peer); return how many won."""
        won = 0
        for event in events:
            swarm = self._swarms.get(event.info_hash)
            if swarm is None:
                if event.kind is Event.STOPPED and not event.expires_ms:
                    continue
                if len(self._swarms) >= self.max_swarms:
                    self._bound_hit("swarms", event.info_hash)
                    continue
                swarm = self._swarms[event.info_hash] = _Swarm()
                swarm.last_seen = now
            endpoint = (event.ip, event.port)
            current = swarm.version_of(endpoint)
            if current is not None and event.version <= current:
                continue
            won += 1
            record = record_of(event, int(self.tombstone_ttl * 1000))
            peers = swarm.peers(family_of(event.ip))
            expires = record.expires_ms / 1000
            if event.kind is Event.COMPLETED:
                swarm.downloaded += 1
            if record.removed or expires <= now:
                peers.remove(endpoint)
                swarm.tombstones[endpoint] = (event.version, max(expires, now))
                continue
            if endpoint in peers.index or len(peers.index) < self.max_peers_per_swarm:
                peers.upsert(Peer(event.ip, event.port, event.peer_id), event.seeder, expires,
                             event.version)
                swarm.tombstones.pop(endpoint, None)
                swarm.next_expiry = min(swarm.next_expiry, expires)
            else:
                self._bound_hit("peers_per_swarm", event.info_hash)
        return won

    async def collect_garbage(self, now: float) -> int:
        removed = 0
        for n, info_hash in enumerate(list(self._swarms)):
            swarm = self._swarms.get(info_hash)
            if swarm is None:
                continue
            if now >= swarm.next_expiry or swarm.tombstones:
                removed += swarm.sweep(now)
            if swarm.empty() and now - swarm.last_seen >= self.peer_ttl:
                del self._swarms[info_hash]
            if n % 10_000 == 9_999:
                await asyncio.sleep(0)  # let announces run during a long sweep
        return removed
