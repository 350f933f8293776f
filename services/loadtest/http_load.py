"""The HTTP driver: raw asyncio connections, keep-alive on (a pool of `window`) or off.

With keep-alive each of `window` connections carries one request at a time (HTTP/1.1 without
pipelining, as BitTorrent clients do). Without it every request opens a connection, sends
`Connection: close` and reads to the end, and the connect is part of its latency. A server that
closes a kept-alive connection after an answer (opentracker does, always) is followed the way
any HTTP client follows it: a request that met the closed connection before a single byte of
answer is re-sent on a new one (`http_retried`), its latency counted from the first send.
Query strings are built with `services.core.http` and every answer is checked by
`answers.check_http_*`.
"""

from __future__ import annotations

import asyncio
import socket
import time

from services.core import http as http_wire

from .answers import BadAnswer, check_http_announce, check_http_scrape
from .load import Load, RunError
from .pacing import Pacer
from .record import Recorder
from .target import Target
from .workload import Planned, Scrape, Traffic

MAX_HEAD = 16 * 1024


class _Head:
    __slots__ = ("status", "length", "close")

    def __init__(self, status: int, length: int | None, close: bool) -> None:
        self.status = status
        self.length = length
        self.close = close


def _parse_head(raw: bytes) -> _Head:
    lines = raw.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise BadAnswer("invalid_answer", f"bad status line {lines[0][:80]!r}")
    length: int | None = None
    close = parts[0] == b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and value.strip().lower() != b"identity":
            raise BadAnswer("invalid_answer",
                            "chunked answer: trackers send a Content-Length; this one did not")
        elif name == b"connection":
            token = value.strip().lower()
            close = token == b"close" or (close and token != b"keep-alive")
    return _Head(int(parts[1]), length, close)


class _Connection(asyncio.Protocol):
    """One TCP connection: sends a request, collects one answer, hands it to the driver."""

    def __init__(self, load: HttpLoad) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head: _Head | None = None
        self.asked: Planned | None = None
        self.raw = b""
        self.sent = 0.0
        self.served = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, raw: bytes, asked: Planned, sent: float) -> None:
        assert self.transport is not None
        self.asked, self.raw, self.sent = asked, raw, sent
        self.buffer.clear()
        self.head = None
        self.transport.write(raw)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.asked is None:
            return  # bytes nobody asked for; the connection is dropped at the next answer
        try:
            if self.head is None:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buffer) > MAX_HEAD:
                        raise BadAnswer("invalid_answer", "answer head over 16 KiB")
                    return
                self.head = _parse_head(bytes(self.buffer[:end]))
                del self.buffer[: end + 4]
            if self.head.length is None or len(self.buffer) < self.head.length:
                return  # wait for the rest, or for the end of the connection
            body = bytes(self.buffer[: self.head.length])
            del self.buffer[: self.head.length]
        except (BadAnswer, ValueError) as exc:
            self._fail(exc)
            return
        self._complete(body)

    def _complete(self, body: bytes) -> None:
        asked, head = self.asked, self.head
        assert asked is not None and head is not None
        self.asked = None
        self.served += 1
        reusable = not head.close and not self.buffer
        self.load.answered(self, asked, head.status, body, self.sent, reusable)

    def _fail(self, exc: Exception) -> None:
        kind = exc.kind if isinstance(exc, BadAnswer) else "invalid_answer"
        self.asked = None
        self.load.failed(self, kind, str(exc), reusable=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.asked is not None:
            if self.head is not None and self.head.length is None and exc is None:
                self._complete(bytes(self.buffer))  # an HTTP/1.0-style answer ends at close
            elif self.head is None and not self.buffer and self.served and exc is None:
                asked, self.asked = self.asked, None
                self.load.resend(self, asked, self.raw, self.sent)
            else:
                self.asked = None
                self.load.failed(self, "connection_closed",
                                 f"connection closed mid-answer: {exc or 'EOF'}", reusable=False)
        self.load.connection_closed(self)


class HttpLoad(Load):
    def __init__(self, target: Target, traffic: Traffic, pacer: Pacer, recorder: Recorder, *,
                 window: int, timeout: float, keep_alive: bool,
                 tracker_pids: tuple[int, ...] = ()) -> None:
        super().__init__(traffic, pacer, recorder, window=window, timeout=timeout,
                         tracker_pids=tracker_pids)
        self.target = target
        self.keep_alive = keep_alive
        self.idle: list[_Connection] = []
        self.busy: set[_Connection] = set()
        self.opening = 0
        self.stopping = False
        host = target.host_header.encode()
        self._announce_head = f"GET {target.announce_path}?".encode()
        self._scrape_head = f"GET {target.scrape_path}?".encode()
        self._tail = (b" HTTP/1.1\r\nHost: " + host + b"\r\nUser-Agent: meridian-loadtest\r\n"
                      + (b"" if keep_alive else b"Connection: close\r\n") + b"\r\n")

    def _request(self, planned: Planned) -> bytes:
        if isinstance(planned, Scrape):
            return (self._scrape_head + http_wire.build_scrape_query(planned.info_hashes)
                    + self._tail)
        return self._announce_head + http_wire.build_announce_query(planned) + self._tail

    async def _open(self) -> _Connection:
        """Connect, within the timeout: a dropped SYN would otherwise wait for its resend."""
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self), self.target.host,
                                       self.target.port), self.timeout)
        except TimeoutError:
            raise ConnectionError(f"connect took over {self.timeout:g} s") from None
        self.recorder.connections += 1
        return connection

    # -- Load
    async def setup(self) -> None:
        if not self.keep_alive:
            try:
                probe = await self._open()
            except OSError as exc:
                raise RunError(self._unreachable(exc)) from None
            assert probe.transport is not None
            probe.transport.close()
            self.recorder.connections -= 1
            return
        results = await asyncio.gather(*(self._open() for _ in range(self.window)),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, _Connection):
                self.idle.append(result)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            for connection in self.idle:
                if connection.transport is not None:
                    connection.transport.close()
            raise RunError(self._unreachable(failures[0]))

    def _unreachable(self, exc: BaseException) -> str:
        return (f"cannot connect to {self.target.url}: {exc or type(exc).__name__}. "
                "Is an HTTP tracker listening there?")

    async def teardown(self) -> None:
        self.stopping = True
        for connection in [*self.idle, *self.busy]:
            if connection.transport is not None:
                connection.transport.close()
        self.idle.clear()
        self.busy.clear()

    def capacity(self) -> int:
        if self.keep_alive:
            return len(self.idle)
        return self.window - self.inflight

    def launch(self) -> None:
        planned = self.traffic.next()
        raw = self._request(planned)
        self.inflight += 1
        sent = time.perf_counter()
        if self.keep_alive:
            connection = self.idle.pop()
            self.busy.add(connection)
            connection.send(raw, planned, sent)
        else:
            self.spawn(self._send_on_new(planned, raw, sent))

    async def _send_on_new(self, planned: Planned, raw: bytes, sent: float) -> None:
        try:
            connection = await self._open()
        except OSError as exc:
            self.recorder.error("connect_failed", str(exc))
            self.finished(time.perf_counter())
            return
        if self.stopping:
            assert connection.transport is not None
            connection.transport.close()
            return
        self.busy.add(connection)
        connection.send(raw, planned, sent)

    def expire(self, now: float) -> None:
        limit = now - self.timeout
        for connection in [c for c in self.busy if c.asked is not None and c.sent < limit]:
            connection.asked = None
            self.busy.discard(connection)
            if connection.transport is not None:
                connection.transport.close()
            self.recorder.error("timeout", f"no answer within {self.timeout:g} s")
            if self.keep_alive:
                self._replace()
            self.finished(now)

    # -- from the connections
    def answered(self, connection: _Connection, asked: Planned, status: int, body: bytes,
                 sent: float, reusable: bool) -> None:
        now = time.perf_counter()
        try:
            if status != 200:
                raise BadAnswer(f"http_{status}", body[:200].decode("latin-1"))
            if isinstance(asked, Scrape):
                peers = check_http_scrape(body, asked)
            else:
                peers = check_http_announce(body, asked)
        except BadAnswer as exc:
            self.recorder.error(exc.kind, exc.detail)
        except Exception as exc:  # a decoder fault: count it, never lose the request
            self.recorder.error("invalid_answer", f"decoder raised {exc!r}")
        else:
            self.recorder.answered("scrape" if isinstance(asked, Scrape) else "announce",
                                   now - sent, peers)
        self._release(connection, reusable)
        self.finished(now)

    def failed(self, connection: _Connection, kind: str, detail: str, *, reusable: bool) -> None:
        self.recorder.error(kind, detail)
        self._release(connection, reusable)
        self.finished(time.perf_counter())

    def resend(self, connection: _Connection, asked: Planned, raw: bytes, sent: float) -> None:
        """The server had closed this kept-alive connection: send again on a fresh one."""
        self.recorder.retried += 1
        self.busy.discard(connection)
        self.spawn(self._resend(asked, raw, sent))

    async def _resend(self, asked: Planned, raw: bytes, sent: float) -> None:
        try:
            connection = await self._open()
        except OSError as exc:
            self.recorder.error("connect_failed", str(exc))
            self.finished(time.perf_counter())
            self._replace()
            return
        self.busy.add(connection)
        connection.send(raw, asked, sent)

    def _release(self, connection: _Connection, reusable: bool) -> None:
        self.busy.discard(connection)
        if self.keep_alive and reusable and not connection.closed:
            self.idle.append(connection)
            return
        if connection.transport is not None and not connection.closed:
            connection.transport.close()
        if self.keep_alive:
            self._replace()

    def _replace(self) -> None:
        """Keep the pool at `window` connections (a server closed one, or we did)."""
        if not self.stopping and self.pacer.open():
            self.opening += 1
            self.spawn(self._reopen())

    async def _reopen(self) -> None:
        try:
            for attempt in range(50):
                try:
                    connection = await self._open()
                    break
                except OSError as exc:
                    self.recorder.error_samples.setdefault("connect_failed", str(exc))
                    await asyncio.sleep(0.01 * (attempt + 1))
            else:
                return
        finally:
            self.opening -= 1
        if self.stopping:
            assert connection.transport is not None
            connection.transport.close()
            return
        self.idle.append(connection)
        if self.pacer.rate is None:
            self.fill()
        else:
            self.send_due(time.perf_counter())

    def connection_closed(self, connection: _Connection) -> None:
        if connection in self.idle:  # the server closed an idle kept-alive connection
            self.idle.remove(connection)
            self._replace()
