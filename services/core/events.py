"""Announce events: what one region tells the others, as a versioned model with a compact
binary encoding.

Every announce a node answers becomes one `AnnounceEvent`. The encoding is a fixed binary
layout led by a schema-version byte; `decode` dispatches on that byte, so a reconciler keeps
reading events from nodes that run an older release. Bytes that do not decode raise
`EventDecodeError` with a reason (the reconciler sends them to the dead-letter topic).

Layout of schema version 1 (big-endian):
    u8 version | u64 hlc | 20s info_hash | u8 ip length (4|16) | ip | u16 port |
    20s peer_id | u8 kind | u8 seeder | u64 expires (UNIX ms) | u8 len + region | u8 len + node
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .model import Event

SCHEMA_VERSION = 1
_FIXED = struct.Struct(">BQ20sB")
_AFTER_IP = struct.Struct(">H20sBBQ")
_KIND_CODES = {Event.UPDATE: 0, Event.STARTED: 1, Event.COMPLETED: 2, Event.STOPPED: 3}
_KINDS = {v: k for k, v in _KIND_CODES.items()}

Name = Annotated[str, Field(min_length=1, max_length=64)]


class EventDecodeError(ValueError):
    """Bytes that are not an announce event of a known schema version."""


class AnnounceEvent(BaseModel):
    """One announce as seen by the node that answered it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    region: Name
    node: Name
    hlc: int = Field(ge=0, lt=1 << 64)
    info_hash: bytes = Field(min_length=20, max_length=20)
    ip: bytes
    port: int = Field(ge=1, le=65535)
    peer_id: bytes = Field(max_length=20)
    kind: Event
    seeder: bool
    expires_ms: int = Field(ge=0, lt=1 << 64, description="when the peer expires, UNIX ms")

    @field_validator("ip")
    @classmethod
    def _ip_length(cls, value: bytes) -> bytes:
        if len(value) not in (4, 16):
            raise ValueError("ip must be 4 or 16 packed bytes")
        return value

    @property
    def version(self) -> tuple[int, str, str]:
        """The order of writes to one peer: HLC, then region and node as tie-breaks."""
        return (self.hlc, self.region, self.node)

    @property
    def peer_key(self) -> tuple[bytes, bytes, int]:
        return (self.info_hash, self.ip, self.port)

    def encode(self) -> bytes:
        region, node = self.region.encode(), self.node.encode()
        return b"".join((
            _FIXED.pack(SCHEMA_VERSION, self.hlc, self.info_hash, len(self.ip)),
            self.ip,
            _AFTER_IP.pack(self.port, self.peer_id.ljust(20, b"\0"), _KIND_CODES[self.kind],
                           int(self.seeder), self.expires_ms),
            bytes((len(region),)), region, bytes((len(node),)), node,
        ))


def _decode_v1(data: bytes) -> AnnounceEvent:
    try:
        _, hlc, info_hash, ip_length = _FIXED.unpack_from(data)
        pos = _FIXED.size
        ip = data[pos : pos + ip_length]
        pos += ip_length
        port, peer_id, kind, seeder, expires_ms = _AFTER_IP.unpack_from(data, pos)
        pos += _AFTER_IP.size
        region_length = data[pos]
        region = data[pos + 1 : pos + 1 + region_length].decode()
        pos += 1 + region_length
        node_length = data[pos]
        node = data[pos + 1 : pos + 1 + node_length].decode()
        pos += 1 + node_length
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise EventDecodeError(f"truncated or garbled v1 event: {exc}") from exc
    if pos != len(data) or len(node) != node_length or len(region) != region_length:
        raise EventDecodeError(f"v1 event has {len(data) - pos} stray bytes")
    if kind not in _KINDS or seeder not in (0, 1):
        raise EventDecodeError(f"v1 event has unknown kind {kind} or seeder flag {seeder}")
    try:
        return AnnounceEvent(region=region, node=node, hlc=hlc, info_hash=info_hash, ip=ip,
                             port=port, peer_id=peer_id, kind=_KINDS[kind], seeder=bool(seeder),
                             expires_ms=expires_ms)
    except ValueError as exc:
        raise EventDecodeError(f"v1 event has invalid fields: {exc}") from exc


_DECODERS: dict[int, Callable[[bytes], AnnounceEvent]] = {1: _decode_v1}


def decode(data: bytes) -> AnnounceEvent:
    """Decode an event of any schema version this release knows."""
    if not data:
        raise EventDecodeError("empty event")
    decoder = _DECODERS.get(data[0])
    if decoder is None:
        raise EventDecodeError(f"unknown event schema version {data[0]} (this release reads "
                               f"{sorted(_DECODERS)}); upgrade the reconciler")
    return decoder(data)
