"""The BEP 15 UDP frontend: an asyncio datagram protocol around `services.core.udp`.

Connects are answered at once (no store call). Announces and scrapes need a valid connection
id; each runs as a task so a slow store never stalls the receive loop. Datagrams too short to
carry a transaction id, or over `udp_max_packet`, are dropped; every other fault gets an error
packet. All of it is counted in metrics, by reason.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from services.core import udp as wire
from services.core.connection_id import ConnectionIds
from services.core.errors import ClientError
from services.core.model import normalize_packed_ip
from services.settings import Settings

from .tracker import Tracker

log = logging.getLogger(__name__)


class UdpTracker(asyncio.DatagramProtocol):
    def __init__(self, tracker: Tracker, ids: ConnectionIds, settings: Settings) -> None:
        self.tracker = tracker
        self.metrics = tracker.metrics
        self.ids = ids
        self.max_packet = settings.udp_max_packet
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport; duck-type it.
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        for task in self.tasks:
            task.cancel()

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP socket error: %s", exc)

    def _drop(self, reason: str) -> None:
        self.metrics.bad_requests.labels("udp", reason).inc()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) > self.max_packet:
            return self._drop("oversized")
        try:
            ip = normalize_packed_ip(socket.inet_pton(
                socket.AF_INET6 if ":" in addr[0] else socket.AF_INET, addr[0].split("%")[0]))
            request = wire.parse_request(data)
        except wire.UdpClientError as exc:
            return self._error(exc, addr)
        except ValueError:
            return self._drop("bad_address")
        if request is wire.DROP:
            return self._drop("short")
        if isinstance(request, wire.ConnectRequest):
            self.metrics.requests.labels("udp", "connect", "ok").inc()
            return self._send(wire.encode_connect(request.transaction_id,
                                                  self.ids.issue(ip, self.tracker.clock())), addr)
        assert isinstance(request, (wire.UdpAnnounce, wire.UdpScrape))
        if not self.ids.valid(request.connection_id.to_bytes(8, "big"), ip, self.tracker.clock()):
            return self._error(wire.UdpClientError(
                "connection id unknown or expired; connect again", "bad_connection_id",
                request.transaction_id), addr)
        task = asyncio.ensure_future(self._answer(request, ip, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, request: wire.UdpAnnounce | wire.UdpScrape, ip: bytes,
                      addr: Any) -> None:
        tid = request.transaction_id
        try:
            if isinstance(request, wire.UdpAnnounce):
                reply = await self.tracker.announce(request.request, ip, "udp")
                packet = wire.encode_announce(tid, reply.interval, reply.answer.stats,
                                              reply.answer.peers, len(ip))
                action = "announce"
            else:
                files = await self.tracker.scrape(request.info_hashes)
                packet = wire.encode_scrape(tid, [files[h] for h in request.info_hashes])
                action = "scrape"
        except ClientError as exc:
            return self._error(wire.UdpClientError(exc.reason, exc.kind, tid), addr)
        except Exception:
            self.metrics.errors.labels("udp").inc()
            log.exception("internal error answering a UDP request")
            return self._send(wire.encode_error(tid, "internal tracker error"), addr)
        self.metrics.requests.labels("udp", action, "ok").inc()
        self._send(packet, addr)

    def _error(self, exc: wire.UdpClientError, addr: Any) -> None:
        self.metrics.bad_requests.labels("udp", exc.kind).inc()
        if exc.kind == "overloaded":
            self.metrics.shed.labels("udp").inc()
        self._send(wire.encode_error(exc.transaction_id, exc.reason), addr)

    def _send(self, packet: bytes, addr: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(packet, addr)
