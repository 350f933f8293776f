"""The merge rule: how announce events from every region combine into one view of a swarm.

Each peer (info_hash, ip, port) is a last-writer-wins register. The write with the greatest
version (HLC, then region, then node) wins, whatever order writes arrive in and however often,
so merging is idempotent, commutative and associative: replays, duplicates and reordering
converge. A `stopped` write is a tombstone: it wins over older writes and is kept until
`tombstone_until`, longer than any peer lives, so a late, older `started` cannot resurrect the
peer. Expiry is separate from merging (`live`), because it depends on the reader's clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .events import AnnounceEvent
from .model import Event

PeerKey = tuple[bytes, bytes, int]
Version = tuple[int, str, str]


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """The winning write for one peer."""

    version: Version
    peer_id: bytes
    seeder: bool
    removed: bool
    expires_ms: int  # the peer's expiry, or for a tombstone when it may be forgotten


def record_of(event: AnnounceEvent, tombstone_ms: int) -> PeerRecord:
    if event.kind is Event.STOPPED:
        return PeerRecord(event.version, event.peer_id, event.seeder, True,
                          max(event.expires_ms, (event.hlc >> 16) + tombstone_ms))
    return PeerRecord(event.version, event.peer_id, event.seeder, False, event.expires_ms)


def wins(candidate: Version, current: PeerRecord | None) -> bool:
    return current is None or candidate > current.version


def merge(state: Mapping[PeerKey, PeerRecord], events: Iterable[AnnounceEvent],
          tombstone_ms: int) -> dict[PeerKey, PeerRecord]:
    """A new state with `events` folded in; `state` is left as it was."""
    merged = dict(state)
    for event in events:
        key = event.peer_key
        if wins(event.version, merged.get(key)):
            merged[key] = record_of(event, tombstone_ms)
    return merged


def live(state: Mapping[PeerKey, PeerRecord], now_ms: int) -> dict[PeerKey, PeerRecord]:
    """The peers a swarm holds at `now_ms`: not removed, not expired."""
    return {k: r for k, r in state.items() if not r.removed and r.expires_ms > now_ms}
