"""Peer stores behind one contract (`base.PeerStore`), chosen by URL (`open_store`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import PeerStore, StoreUnavailable

if TYPE_CHECKING:
    from services.settings import Settings


def open_store(settings: Settings) -> PeerStore:
    """The store named by `settings.store`: `memory://` (default) or a Redis URL."""
    url = settings.store
    scheme = url.split("://", 1)[0].lower()
    if scheme == "memory":
        from .memory import MemoryPeerStore

        return MemoryPeerStore(settings.effective_peer_ttl, settings.max_swarms,
                               settings.max_peers_per_swarm)
    raise ValueError(
        f"unknown store URL {url!r}: use memory:// (the embedded default)"
    )


__all__ = ["PeerStore", "StoreUnavailable", "open_store"]
