"""The embedded store's memory bounds: at a bound, peers are answered but not stored, and the
operator is told once in the log (not once per announce)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.core.model import Event, Peer
from services.stores.memory import MemoryPeerStore


def peer(n: int) -> Peer:
    return Peer(bytes([10, 0, n // 256, n % 256]), 6881, b"p" * 20)


def test_peers_per_swarm_bound(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryPeerStore(peer_ttl=60, max_peers_per_swarm=3)
    with caplog.at_level(logging.WARNING):
        answers = [asyncio.run(store.announce(b"h" * 20, peer(n), Event.STARTED, False, 50, 0.0))
                   for n in range(6)]
    assert answers[-1].stats.incomplete == 3
    assert len(answers[-1].peers) == 3  # still answered, with the stored peers
    assert store.bounds_hit["peers_per_swarm"] == 3
    warnings = [r for r in caplog.records if "bound hit" in r.getMessage()]
    assert len(warnings) == 1 and "MERIDIAN_MAX_PEERS_PER_SWARM" in warnings[0].getMessage()


def test_swarm_bound() -> None:
    store = MemoryPeerStore(peer_ttl=60, max_swarms=2)
    for n in range(4):
        asyncio.run(store.announce(bytes([n]) * 20, peer(1), Event.STARTED, False, 50, 0.0))
    assert store.counts() == (2, 2)
    assert store.bounds_hit["swarms"] == 2
