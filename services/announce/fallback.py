"""Degraded mode's two building blocks: the stale cache and the circuit breaker around the store.

`StaleCache` keeps, per torrent, the last good answer this process saw (counts and, per address
family, a bounded set of peers), written through by the process's own announces. When the store
cannot answer, the tracker answers from it and tags the answer as stale with its age. Peers this
process learned while degraded are handed out too, so a lone process still connects its own
clients.

`CircuitBreaker` decides whether a call may go to the store at all: after a run of failures it
stops sending calls (the cache answers at once instead of every announce waiting for a timeout),
then lets a few probes through, and closes again when one succeeds.

Both are pure: they read no clock (time is passed in, or a clock is injected), open no socket and
start no task, so tests drive them step by step.
"""

from __future__ import annotations

import enum
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable

from services.core.model import Event, Family, Peer, SwarmAnswer, SwarmStats

log = logging.getLogger(__name__)

# Below the peer TTL by this share, so a client told to wait the stretched interval still
# re-announces before the store (and other regions) forget it.
_TTL_MARGIN = 0.9


def stretched_interval(interval: int, factor: float, peer_ttl: float) -> int:
    """`interval` lengthened by `factor` for stale or emergency answers, but kept below the peer
    TTL: a client that waits longer than the TTL drops out of every swarm before it returns."""
    longest = int(peer_ttl * _TTL_MARGIN)
    return max(interval, min(int(interval * factor), longest))



def stretched_intervals(interval: int, min_interval: int, factor: float,
                        peer_ttl: float) -> tuple[int, int]:
    """(interval, min interval), both stretched by `factor` as `stretched_interval` does."""
    return (stretched_interval(interval, factor, peer_ttl),
            stretched_interval(min_interval, factor, peer_ttl))

class _Cached:
    """One peer as the cache knows it.

    `seeder` is None when only a store answer named the peer (answers do not say who seeds).
    `epoch` equals its torrent's epoch when the peer's arrival was counted in the torrent's
    delta rather than in the store's counts (so that its expiry can uncount it).
    """

    __slots__ = ("peer", "key", "seeder", "seen", "epoch")

    def __init__(self, peer: Peer, key: tuple[bytes, int], seeder: bool | None, seen: float,
                 epoch: int) -> None:
        self.peer = peer
        self.key = key
        self.seeder = seeder
        self.seen = seen
        self.epoch = epoch


# (ip, port) -> peer, in the order last seen, oldest first. A plain dict, not an OrderedDict:
# copying its values (every answer does) is several times faster, and "move to the end" is a
# pop and an insert.
_Peers = dict[tuple[bytes, int], _Cached]


class _Torrent:
    """One torrent: counts of the last good answer plus this process's changes since, and the
    peers of each family, oldest-seen first."""

    __slots__ = ("v4", "v6", "merged4", "merged6", "stats", "stats_at", "refreshed", "epoch",
                 "d_complete", "d_incomplete", "d_downloaded")

    def __init__(self, now: float) -> None:
        self.v4: _Peers | None = None
        self.v6: _Peers | None = None
        self.merged4 = self.merged6 = -math.inf  # when a store answer's peers last joined
        self.stats = SwarmStats()
        self.stats_at = -math.inf  # `now` of the store answer `stats` came from
        self.refreshed = now  # last good store answer (or creation): the age of a stale answer
        self.epoch = 0
        self.d_complete = 0
        self.d_incomplete = 0
        self.d_downloaded = 0

    def peers(self, family: Family) -> _Peers | None:
        return self.v4 if family is Family.IPV4 else self.v6

    def peers_or_new(self, family: Family) -> _Peers:
        if family is Family.IPV4:
            if self.v4 is None:
                self.v4 = {}
            return self.v4
        if self.v6 is None:
            self.v6 = {}
        return self.v6

    def count(self, seeder: bool, change: int) -> None:
        if seeder:
            self.d_complete += change
        else:
            self.d_incomplete += change

    def current_stats(self) -> SwarmStats:
        return SwarmStats(max(0, self.stats.complete + self.d_complete),
                          max(0, self.stats.incomplete + self.d_incomplete),
                          max(0, self.stats.downloaded + self.d_downloaded))

    def size(self) -> int:
        return len(self.v4 or ()) + len(self.v6 or ())


class StaleCache:
    """The last good answer per torrent, bounded, for answering while the store is away.

    Bounds: at most `max_torrents` torrents (least recently used go first), at most
    `peers_per_family` peers per torrent and family (oldest-seen go first), and at most
    `max_peers` peers in all (least recently used torrents go until it holds). A peer not seen
    for `peer_ttl` seconds is never handed out. Every call costs O(1) plus O(peers_per_family)
    for the torrent it touches; a store answer's peers join at most every `merge_every` seconds
    per torrent and family (its counts every time), which keeps the cost on the healthy path
    at a few microseconds for busy torrents.

    Counts while degraded are approximate: the last good counts, adjusted by this process's own
    announces since (arrivals, departures, seeders that finished, completions).

    Write it through on every announce (`remember_announce`, whatever the store did) and refresh
    it from every good store answer (`remember_answer`); the order of the two calls for one
    announce does not matter as long as both get the same `now`.
    """

    def __init__(self, peer_ttl: float, max_torrents: int = 100_000,
                 peers_per_family: int = 200, max_peers: int = 200_000,
                 merge_every: float = 10.0, rng: random.Random | None = None) -> None:
        if peer_ttl <= 0 or max_torrents < 1 or peers_per_family < 1 or merge_every < 0:
            raise ValueError("peer_ttl, max_torrents and peers_per_family must be positive, "
                             "merge_every not negative")
        if max_peers < 2 * peers_per_family:
            raise ValueError(f"max_peers ({max_peers}) must hold at least one torrent's peers "
                             f"of both families (2 x peers_per_family = {2 * peers_per_family})")
        self.peer_ttl = peer_ttl
        self.max_torrents = max_torrents
        self.peers_per_family = peers_per_family
        self.max_peers = max_peers
        self.merge_every = merge_every
        self._rng = rng or random.Random()
        self._torrents: OrderedDict[bytes, _Torrent] = OrderedDict()
        self._held = 0
        self.evicted_torrents = 0

    def __len__(self) -> int:
        return len(self._torrents)

    @property
    def peers_held(self) -> int:
        return self._held

    # -- writing -----------------------------------------------------------------------------

    def remember_announce(self, info_hash: bytes, peer: Peer, seeder: bool, event: Event,
                          now: float) -> None:
        """This process's own announce: add or update the peer, or remove it on `stopped`."""
        torrent = self._torrents.get(info_hash)
        if torrent is None:
            if event is Event.STOPPED:
                return
            torrent = self._torrents[info_hash] = _Torrent(now)
        else:
            self._torrents.move_to_end(info_hash)
        # An answer the store gave at `now` or later already counts this announce.
        counted_by_store = now <= torrent.stats_at
        key = peer.endpoint
        peers = (torrent.peers(peer.family) if event is Event.STOPPED
                 else torrent.peers_or_new(peer.family))
        old = peers.pop(key, None) if peers is not None else None
        if old is not None:
            self._held -= 1
        if event is Event.STOPPED:
            if old is not None and not counted_by_store:
                torrent.count(seeder if old.seeder is None else old.seeder, -1)
            return
        assert peers is not None
        epoch = old.epoch if old is not None else -1
        if not counted_by_store:
            if event is Event.COMPLETED:
                torrent.d_downloaded += 1
            if old is None:
                torrent.count(seeder, +1)
                epoch = torrent.epoch
            elif old.seeder is not None and old.seeder != seeder:
                torrent.count(old.seeder, -1)
                torrent.count(seeder, +1)
        peers[key] = _Cached(peer, key, seeder, now, epoch)
        self._held += 1
        self._trim(torrent, peers)
        self._bound()

    def remember_answer(self, info_hash: bytes, family: Family, answer: SwarmAnswer, now: float,
                        *, requester_seeder: bool = False) -> None:
        """A good store answer: its counts replace older ones, its peers (of `family`) join.

        With `requester_seeder`, the answer went to a seeder, so its peers are leechers.
        """
        torrent = self._torrents.get(info_hash)
        if torrent is None:
            torrent = self._torrents[info_hash] = _Torrent(now)
        else:
            self._torrents.move_to_end(info_hash)
        if now >= torrent.stats_at:
            torrent.stats = answer.stats
            torrent.stats_at = now
            torrent.epoch += 1  # what was counted in the delta is in these counts now
            torrent.d_complete = torrent.d_incomplete = torrent.d_downloaded = 0
        torrent.refreshed = max(torrent.refreshed, now)
        merged = torrent.merged4 if family is Family.IPV4 else torrent.merged6
        if answer.peers and now - merged >= self.merge_every:
            if family is Family.IPV4:
                torrent.merged4 = now
            else:
                torrent.merged6 = now
            self._merge(torrent, torrent.peers_or_new(family), answer.peers, now,
                        requester_seeder)
        self._bound()

    def _merge(self, torrent: _Torrent, peers: _Peers, answer: tuple[Peer, ...], now: float,
               requester_seeder: bool) -> None:
        told = False if requester_seeder else None
        for peer in answer:
            key = peer.endpoint
            old = peers.get(key)
            if old is None:
                peers[key] = _Cached(peer, key, told, now, -1)
                self._held += 1
                continue
            if now < old.seen:
                continue  # this process heard from the peer itself since: that is newer
            if requester_seeder and old.seeder is not False:
                if old.seeder and old.epoch == torrent.epoch:
                    torrent.count(True, -1)
                    torrent.count(False, +1)
                old.seeder = False
            old.seen = now
            del peers[key]
            peers[key] = old  # last seen now: to the end
        self._trim(torrent, peers)

    def _trim(self, torrent: _Torrent, peers: _Peers) -> None:
        while len(peers) > self.peers_per_family:
            self._drop_oldest(torrent, peers)

    def _drop_oldest(self, torrent: _Torrent, peers: _Peers) -> None:
        gone = peers.pop(next(iter(peers)))
        self._held -= 1
        if gone.epoch == torrent.epoch and gone.seeder is not None:
            torrent.count(gone.seeder, -1)  # its arrival was counted by us, so is its leaving

    def _expire(self, torrent: _Torrent, peers: _Peers, now: float) -> None:
        oldest = now - self.peer_ttl
        while peers and next(iter(peers.values())).seen <= oldest:
            self._drop_oldest(torrent, peers)

    def _bound(self) -> None:
        while len(self._torrents) > self.max_torrents or self._held > self.max_peers:
            _, gone = self._torrents.popitem(last=False)
            self._held -= gone.size()
            self.evicted_torrents += 1

    # -- reading -----------------------------------------------------------------------------

    def answer(self, info_hash: bytes, peer: Peer, seeder: bool, numwant: int, now: float,
               max_age: float | None = None) -> tuple[SwarmAnswer, float] | None:
        """An answer for `peer` from the cache and its age in seconds (since the torrent's last
        good store answer), or None if the torrent is not cached (or older than `max_age`).

        The rules of `PeerStore.announce`: peers of the requester's family only, never the
        requester, at most `numwant`; a seeder is given leechers, then peers of unknown kind
        (never a known seeder); chosen at random when more are cached.
        """
        torrent = self._torrents.get(info_hash)
        if torrent is None:
            return None
        age = max(0.0, now - torrent.refreshed)
        if max_age is not None and age > max_age:
            return None
        self._torrents.move_to_end(info_hash)
        peers = torrent.peers(peer.family)
        chosen: list[Peer] = []
        if peers and numwant > 0:
            self._expire(torrent, peers, now)
            cached = list(peers.values())
            oldest = now - self.peer_ttl
            me = peer.endpoint
            if seeder:
                chosen = self._pick([c for c in cached if c.seeder is False], numwant, me,
                                    oldest)
                if len(chosen) < numwant:
                    chosen += self._pick([c for c in cached if c.seeder is None],
                                         numwant - len(chosen), me, oldest)
            else:
                chosen = self._pick(cached, numwant, me, oldest)
        return SwarmAnswer(torrent.current_stats(), tuple(chosen)), age

    def _pick(self, candidates: list[_Cached], k: int, me: tuple[bytes, int], oldest: float
              ) -> list[Peer]:
        """Up to k live peers but `me`: a window at a random offset (one more than k, in case
        `me` is in it), so every cached peer is as likely to be chosen, at the cost of a slice."""
        if len(candidates) > k + 1:
            start = self._rng.randrange(len(candidates))
            candidates = (candidates[start:start + k + 1]
                          + candidates[:max(0, start + k + 1 - len(candidates))])
        out = [c.peer for c in candidates if c.seen > oldest and c.key != me]
        return out[:k]

    def scrape(self, info_hash: bytes) -> SwarmStats | None:
        """The cached counts of a torrent, or None if it is not cached."""
        torrent = self._torrents.get(info_hash)
        return None if torrent is None else torrent.current_stats()


class BreakerState(enum.Enum):
    CLOSED = "closed"  # calls go to the store
    OPEN = "open"  # calls are answered from the cache without trying the store
    HALF_OPEN = "half_open"  # a few probes go to the store; the rest are answered from the cache


StateListener = Callable[[BreakerState, BreakerState], None]


class CircuitBreaker:
    """Whether a call may go to the store, from the outcomes of the calls before it.

    CLOSED -> OPEN after `failure_threshold` consecutive failures (errors and timeouts alike);
    OPEN for `open_seconds`; then HALF_OPEN, where `allow()` lets `probe_count` calls through
    and refuses the rest; a success there closes the breaker, a failure opens it again. If no
    probe reports back within `open_seconds` (its caller was cancelled), a new round of probes
    is let through, so the breaker can never stay half-open for good.

    Usage, around every store call:

        if breaker.allow():
            try: answer = await store.announce(...)
            except StoreUnavailable: breaker.record_failure(); <answer from the cache>
            else: breaker.record_success()
        else: <answer from the cache>

    Outcomes reported while OPEN (calls that started before it opened) change nothing. The
    OPEN -> HALF_OPEN step happens in `allow()`, so `state` reads "open" until a call asks.
    Listeners get (old, new) on every change, for metrics and the log; they must not raise
    (an exception is logged and ignored).
    """

    def __init__(self, failure_threshold: int = 5, open_seconds: float = 5.0,
                 probe_count: int = 1, clock: Callable[[], float] = time.monotonic,
                 on_change: StateListener | None = None) -> None:
        if failure_threshold < 1 or probe_count < 1 or open_seconds <= 0:
            raise ValueError("failure_threshold and probe_count must be at least 1, "
                             "open_seconds above 0")
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self.probe_count = probe_count
        self.clock = clock
        self.listeners: list[StateListener] = [on_change] if on_change else []
        self._state = BreakerState.CLOSED
        self._failures = 0  # consecutive, while CLOSED
        self._since = clock()  # when the current state (or probe round) began
        self._probes = 0  # let through in this HALF_OPEN round

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """May this call go to the store? (False: answer it from the cache.)"""
        if self._state is BreakerState.CLOSED:
            return True
        now = self.clock()
        if self._state is BreakerState.OPEN:
            if now - self._since < self.open_seconds:
                return False
            self._change(BreakerState.HALF_OPEN, now)
        elif self._probes >= self.probe_count and now - self._since >= self.open_seconds:
            self._since = now  # the last round's probes never reported: try again
            self._probes = 0
        if self._probes < self.probe_count:
            self._probes += 1
            return True
        return False

    def record_success(self) -> None:
        if self._state is BreakerState.CLOSED:
            self._failures = 0
        elif self._state is BreakerState.HALF_OPEN:
            self._change(BreakerState.CLOSED, self.clock())

    def record_failure(self) -> None:
        if self._state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._change(BreakerState.OPEN, self.clock())
        elif self._state is BreakerState.HALF_OPEN:
            self._change(BreakerState.OPEN, self.clock())

    def _change(self, new: BreakerState, now: float) -> None:
        old, self._state = self._state, new
        self._since = now
        self._probes = 0
        self._failures = 0
        for listener in self.listeners:
            try:
                listener(old, new)
            except Exception:
                log.exception("circuit breaker listener failed on %s -> %s", old.value,
                              new.value)
