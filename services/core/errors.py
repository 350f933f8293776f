"""Whose fault a failure is.

A `ClientError` is the remote side's fault: a malformed or refused request. It carries a message
that is safe to send back (as a bencoded `failure reason` or a UDP error packet) and a short
`kind` label for metrics. Anything else raised while serving is our own bug: the frontends turn
it into a 500 or a generic error packet and a log line, never into a crash.
"""

from __future__ import annotations


class ClientError(Exception):
    """A request the client got wrong; `reason` goes back on the wire, `kind` to metrics."""

    def __init__(self, reason: str, kind: str, retry_in_minutes: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.retry_in_minutes = retry_in_minutes  # BEP 31: come back later, do not give up


class BencodeError(ClientError):
    """Input that is not strict, bounded bencode."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, "bencode")


class TrackerBug(Exception):
    """An invariant of our own was broken (we tried to send something illegal)."""
