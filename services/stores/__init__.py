"""Peer stores behind one contract (`base.PeerStore`), chosen by URL (`open_store`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import PeerStore, StoreUnavailable

if TYPE_CHECKING:
    from services.settings import Settings

REDIS_SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster")


def open_store(settings: Settings) -> PeerStore:
    """The store named by `settings.store`.

    - `memory://` (default): this process's memory.
    - `redis://[user:password@]host:port/db`, `rediss://...` (TLS): one Redis server.
    - `redis+cluster://[user:password@]host:port[,host:port...]`, `rediss+cluster://...`:
      a Redis Cluster reached through any of the listed nodes.
    """
    url = settings.store
    scheme = url.split("://", 1)[0].lower()
    if scheme == "memory":
        from .memory import MemoryPeerStore

        return MemoryPeerStore(settings.effective_peer_ttl, settings.max_swarms,
                               settings.max_peers_per_swarm, settings.effective_tombstone_ttl)
    if scheme in REDIS_SCHEMES:
        from .redis import open_redis_store

        return open_redis_store(
            url, settings.effective_peer_ttl,
            max_peers_per_swarm=settings.max_peers_per_swarm,
            peer_ids=settings.redis_peer_ids,
            downloaded_ttl=settings.downloaded_ttl,
            timeout=settings.redis_timeout,
            batch=settings.redis_batch,
            max_connections=settings.redis_max_connections,
            tombstone_ttl=settings.effective_tombstone_ttl)
    raise ValueError(
        f"unknown store URL {url!r}: use memory:// (the embedded default), redis://host:port/db, "
        "rediss://... (TLS) or redis+cluster://host:port[,host:port...]"
    )


__all__ = ["PeerStore", "StoreUnavailable", "open_store"]
