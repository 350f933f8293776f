"""The BEP 15 driver: one connected UDP socket, answers matched to requests by transaction id.

It connects first (and again every 60 seconds, as BEP 15 clients must), then keeps announces
and scrapes in flight. Packets are built with `services.core.udp` and every answer is decoded
and checked by `answers.check_udp`. An answer that arrives after its request timed out is
counted as `late_answer`, never matched to another request.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from services.core import udp as udp_wire

from .answers import BadAnswer, check_udp
from .load import Load, RunError
from .pacing import Pacer
from .record import Recorder
from .target import Target
from .workload import Planned, Scrape, Traffic

CONNECT_EVERY = 60.0  # seconds: BEP 15 lets a client use a connection id for one minute
_CONNECT = None  # what a pending connect asked


class UdpLoad(Load, asyncio.DatagramProtocol):
    def __init__(self, target: Target, traffic: Traffic, pacer: Pacer, recorder: Recorder, *,
                 window: int, timeout: float, tracker_pids: tuple[int, ...] = ()) -> None:
        super().__init__(traffic, pacer, recorder, window=window, timeout=timeout,
                         tracker_pids=tracker_pids)
        self.target = target
        self.family_length = 16 if ":" in target.host else 4
        self.transport: Any = None
        self.connection_id: int | None = None
        self.pending: dict[int, tuple[float, Planned | None]] = {}
        self._next_tid = int.from_bytes(b"ML\0\0", "big")
        self._connected: asyncio.Future[None] | None = None

    # -- asyncio.DatagramProtocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # room for a full window of answers between two reads
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the requests concerned time out and are counted.
        self.recorder.error_samples.setdefault("timeout", f"socket error before: {exc}")

    def datagram_received(self, data: bytes, addr: Any) -> None:
        now = time.perf_counter()
        tid = int.from_bytes(data[4:8], "big") if len(data) >= 8 else -1
        entry = self.pending.pop(tid, None)
        if entry is None:
            self.recorder.error("late_answer", f"answer with unknown transaction id {tid}")
            return
        sent, asked = entry
        try:
            checked = check_udp(data, asked, self.family_length)
        except BadAnswer as exc:
            if asked is _CONNECT:
                self._connect_answered(None, exc.detail)
                return
            self.recorder.error(exc.kind, exc.detail)
        except Exception as exc:  # a decoder fault: count it, never lose the request
            if asked is _CONNECT:
                self._connect_answered(None, repr(exc))
                return
            self.recorder.error("invalid_answer", f"decoder raised {exc!r}")
        else:
            if isinstance(checked, bytes):
                self._connect_answered(checked, "")
                return
            self.recorder.answered("scrape" if isinstance(asked, Scrape) else "announce",
                                   now - sent, checked)
        self.finished(now)

    # -- connection ids
    def _tid(self) -> int:
        self._next_tid = (self._next_tid + 1) & 0xFFFFFFFF
        return self._next_tid

    def _send_connect(self) -> None:
        tid = self._tid()
        self.pending[tid] = (time.perf_counter(), _CONNECT)
        self.transport.sendto(udp_wire.build_connect(tid))

    def _connect_answered(self, connection_id: bytes | None, problem: str) -> None:
        self.recorder.connects += 1
        if connection_id is not None:
            self.connection_id = int.from_bytes(connection_id, "big")
        if self._connected is not None and not self._connected.done():
            if connection_id is not None:
                self._connected.set_result(None)
            else:
                self._connected.set_exception(RunError(
                    f"{self.target.url} refused a UDP connect: {problem}"))

    async def _reconnect_forever(self) -> None:
        while True:
            await asyncio.sleep(CONNECT_EVERY)
            self._send_connect()  # the old id stays in use until the new one arrives

    # -- Load
    async def setup(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.target.host else socket.AF_INET
        await loop.create_datagram_endpoint(lambda: self, family=family,
                                            remote_addr=(self.target.host, self.target.port))
        for _ in range(3):
            self._connected = loop.create_future()
            self._send_connect()
            try:
                await asyncio.wait_for(asyncio.shield(self._connected), self.timeout)
                break
            except TimeoutError:
                self.pending.clear()
        if self.connection_id is None:
            self.transport.close()
            raise RunError(f"no answer to a UDP connect from {self.target.url} in 3 tries of "
                           f"{self.timeout:g} s: is a UDP tracker listening there?")
        self.spawn(self._reconnect_forever())

    async def teardown(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def capacity(self) -> int:
        return self.window - self.inflight

    def launch(self) -> None:
        planned = self.traffic.next()
        tid = self._tid()
        assert self.connection_id is not None
        if isinstance(planned, Scrape):
            packet = udp_wire.build_scrape(self.connection_id, tid, list(planned.info_hashes))
        else:
            packet = udp_wire.build_announce(self.connection_id, tid, planned)
        self.inflight += 1
        self.pending[tid] = (time.perf_counter(), planned)
        self.transport.sendto(packet)

    def expire(self, now: float) -> None:
        limit = now - self.timeout
        stale = [tid for tid, (sent, _) in self.pending.items() if sent < limit]
        for tid in stale:
            _, asked = self.pending.pop(tid)
            if asked is _CONNECT:
                continue  # the next periodic connect tries again
            self.recorder.error("timeout", f"no answer within {self.timeout:g} s")
            self.finished(now)
