"""The BEP 15 UDP frontend: an asyncio datagram protocol around `services.core.udp`.

Connects are answered at once (no store call). Announces and scrapes need a valid connection
id; each runs as a task so a slow store never stalls the receive loop, except on a store that
never waits (`in_process`, the memory store): there the answer runs to its end inside
`datagram_received`, as Python 3.12's eager tasks would, which saves a task per datagram; if it
does wait after all, a task carries on from where it stopped. Datagrams too short to carry a
transaction id, or over `udp_max_packet`, are dropped; every other fault gets an error packet.
All of it is counted in metrics, by reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from services.core import udp as wire
from services.core.connection_id import ConnectionIds
from services.core.errors import ClientError
from services.settings import Settings

from .client_ip import pack_host
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
        self.eager = getattr(tracker.store, "in_process", False) is True

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
            ip = pack_host(addr[0])
            request = wire.parse_request(data)
        except wire.UdpClientError as exc:
            return self._error(exc, addr)
        except ValueError:
            return self._drop("bad_address")
        if request is wire.DROP:
            return self._drop("short")
        if isinstance(request, wire.ConnectRequest):
            self.metrics.answered("udp", "connect").inc()
            return self._send(wire.encode_connect(request.transaction_id,
                                                  self.ids.issue(ip, self.tracker.clock())), addr)
        assert isinstance(request, (wire.UdpAnnounce, wire.UdpScrape))
        if not self.ids.valid(request.connection_id.to_bytes(8, "big"), ip, self.tracker.clock()):
            return self._error(wire.UdpClientError(
                "connection id unknown or expired; connect again", "bad_connection_id",
                request.transaction_id), addr)
        answer = self._answer(request, ip, addr)
        if self.eager:
            try:
                waiting = answer.send(None)
            except StopIteration:
                return None
            task = asyncio.ensure_future(_carry_on(answer, waiting))
            # Cancelled, even before its first step, the task leaves `answer` suspended: close
            # it, so its `finally` blocks run now rather than whenever it is collected.
            task.add_done_callback(lambda _: answer.close())
        else:
            task = asyncio.ensure_future(answer)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, request: wire.UdpAnnounce | wire.UdpScrape, ip: bytes,
                      addr: Any) -> None:
        tid = request.transaction_id
        try:
            if isinstance(request, wire.UdpAnnounce):
                reply = await self.tracker.announce(request.request, ip, "udp")
                packet = wire.encode_announce(tid, reply.interval, reply.answer.stats,
                                              reply.answer.peers, len(ip), reply.answer.compact)
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
        self.metrics.answered("udp", action).inc()
        self._send(packet, addr)

    def _error(self, exc: wire.UdpClientError, addr: Any) -> None:
        self.metrics.bad_requests.labels("udp", exc.kind).inc()
        if exc.kind == "overloaded":
            self.metrics.shed.labels("udp").inc()
        self._send(wire.encode_error(exc.transaction_id, exc.reason), addr)

    def _send(self, packet: bytes, addr: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(packet, addr)


async def _carry_on(answer: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Run the rest of a coroutine whose first step, taken outside any task, yielded `waiting`:
    the future it awaits, or None for a bare yield to the event loop (what `Task` does)."""
    while True:
        try:
            if waiting is None:
                await asyncio.sleep(0)
            else:
                waiting._asyncio_future_blocking = False
                await asyncio.wait((waiting,))
        except asyncio.CancelledError:
            if waiting is not None:
                waiting.cancel()
            raise
        try:
            waiting = answer.send(None)
        except StopIteration:
            return
