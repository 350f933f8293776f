"""The one storage contract every peer store meets: `PeerStore`.

tests/contract/ runs a single suite against every implementation; a new store is done when that
suite passes against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from services.core.events import AnnounceEvent
from services.core.merge import Version
from services.core.model import Event, Peer, SwarmAnswer, SwarmStats


class StoreUnavailable(Exception):
    """The store cannot answer now (down, slow, or refusing); the caller may fall back."""


@runtime_checkable
class PeerStore(Protocol):
    """Live swarms: who is in each torrent, and its counts.

    Duties no signature shows:
    - A peer's identity inside a swarm is (info_hash, ip, port). A second announce from the same
      endpoint replaces the first (its peer_id and seeder flag may change); a copied peer_id
      from another endpoint never overwrites anybody.
    - IPv4 and IPv6 peers are kept apart: an answer holds peers of the announcing peer's family
      only, while counts cover both families.
    - A peer that has not announced for `peer_ttl` seconds is gone: never returned, never
      counted. Expired peers are collected without a full scan per announce, and idle swarms
      vanish (`collect_garbage`).
    - `announce` upserts the peer and answers in one step (one round trip for remote stores).
      It returns at most `numwant` peers, never the announcing peer itself; a seeder receives
      leechers only, a leecher any peers, chosen at random when the swarm holds more.
    - `Event.STOPPED` removes the peer and returns no peers. `Event.COMPLETED` adds one to the
      torrent's `downloaded` count.
    - Memory is bounded (peers per swarm, swarms); at a bound a new peer or swarm is answered
      but not stored, and the operator is told in the log and a metric.
    - Every call raises `StoreUnavailable` instead of hanging when the backend is down or slow.
    - `now` is the caller's clock in seconds (UNIX time); stores read no clock of their own
      for peer lifetimes, which keeps tests exact and nodes consistent.
    - Versions (merge rule in `services.core.merge`): `announce` records the version of the
      local write it is given; `apply` merges other regions' events last-writer-wins per
      peer against those versions, `stopped` leaving a tombstone for `tombstone_ttl`, and is
      idempotent and order-free. A `completed` that wins adds to `downloaded`.
    - Region flags (`get_flag`/`set_flag`) are small values every process on this store sees:
      "populated" (the store has been built; its absence after a restart means rebuild),
      "rebuilding", "emergency".
    """

    async def start(self) -> None:
        """Connect, load scripts, start background work."""

    async def close(self) -> None:
        """Release every connection and task."""

    async def ping(self) -> None:
        """Return if the store answers, else raise `StoreUnavailable`."""

    async def announce(self, info_hash: bytes, peer: Peer, event: Event, seeder: bool,
                       numwant: int, now: float, version: Version | None = None
                       ) -> SwarmAnswer:
        """Record the announce (with the version of this write, if any) and answer it."""

    async def apply(self, events: Sequence[AnnounceEvent], now: float) -> int:
        """Merge events from other regions; return how many won."""

    async def get_flag(self, name: str) -> str | None:
        """A region flag's value, or None if unset or expired."""

    async def set_flag(self, name: str, value: str | None, ttl: float | None = None) -> None:
        """Set (or with None clear) a region flag, optionally for `ttl` seconds."""

    async def scrape(self, info_hashes: Sequence[bytes], now: float) -> list[SwarmStats]:
        """Counts for each hash, in order; unknown torrents count zero."""

    async def full_scrape(self, limit: int, now: float) -> dict[bytes, SwarmStats]:
        """Counts for up to `limit` torrents."""

    async def collect_garbage(self, now: float) -> int:
        """Drop expired peers and empty swarms; return how many peers went."""
