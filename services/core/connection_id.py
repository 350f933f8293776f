"""UDP connection ids (BEP 15) that every node of every region can check without sharing state.

An id is a keyed BLAKE2b MAC of (client IP, time window) under a secret all nodes share, so a
client whose route moves to another node or region keeps working. The port is left out on
purpose: clients announce from other source ports with an id they already hold (aquatic and
opentracker allow it too). An id issued in window w is accepted through window w+1, so its life
is between one and two `lifetime`s. Time is passed in: this module reads no clock.
"""

from __future__ import annotations

import hashlib
import hmac


class ConnectionIds:
    __slots__ = ("_secret", "_lifetime")

    def __init__(self, secret: bytes, lifetime: float) -> None:
        if len(secret) < 16:
            raise ValueError("the connection-id secret must be at least 16 bytes")
        if len(secret) > 64:
            secret = hashlib.sha256(secret).digest()
        if lifetime <= 0:
            raise ValueError("the connection-id lifetime must be positive")
        self._secret = secret
        self._lifetime = lifetime

    def _mac(self, ip: bytes, window: int) -> bytes:
        return hashlib.blake2b(ip + window.to_bytes(8, "big", signed=True), digest_size=8,
                               key=self._secret).digest()

    def _window(self, now: float) -> int:
        return int(now // self._lifetime)

    def issue(self, ip: bytes, now: float) -> bytes:
        """An 8-byte id for this client IP, valid from now for at least one lifetime."""
        return self._mac(ip, self._window(now))

    def valid(self, connection_id: bytes, ip: bytes, now: float) -> bool:
        window = self._window(now)
        return hmac.compare_digest(connection_id, self._mac(ip, window)) or hmac.compare_digest(
            connection_id, self._mac(ip, window - 1)
        )
