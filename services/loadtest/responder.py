"""A trivial tracker with fixed, valid answers: the load generator's own ceiling.

It keeps no swarms and parses next to nothing (UDP: action and transaction id; HTTP: the end of
each request head and its path), so almost all the CPU of a run against it is the generator's.
The answers are built once with `services.core` encoders and are as heavy to decode as a real
busy swarm's: every announce answer carries `--peers` peers (default 50, a full numwant), so the
ceiling it measures is a conservative one.

    python -m services.loadtest.responder --port 0    # prints the port, serves until SIGTERM
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import struct
import sys
from typing import Any

from services.core import http as http_wire
from services.core import udp as udp_wire
from services.core.model import (
    AnnounceReply,
    AnnounceRequest,
    Peer,
    SwarmAnswer,
    SwarmStats,
)

STATS = SwarmStats(complete=12, incomplete=34, downloaded=5)


def fixed_peers(count: int) -> tuple[Peer, ...]:
    return tuple(Peer(b"\x7f\x00\x00\x01", 20000 + i) for i in range(count))


def _http_answer(body: bytes, close: bool) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n"
            % (len(body), b"Connection: close\r\n" if close else b"")) + body


class Answers:
    """Every answer, encoded once."""

    def __init__(self, peers: int) -> None:
        reply = AnnounceReply(SwarmAnswer(STATS, fixed_peers(peers)), 1800, 900,
                              b"\x7f\x00\x00\x01")
        announce = http_wire.encode_announce(reply, AnnounceRequest(b"\0" * 20, b"\0" * 20, 1))
        scrape = http_wire.encode_scrape({})  # valid: trackers omit torrents they do not know
        self.http = {(path, close): _http_answer(body, close)
                     for path, body in ((b"/announce", announce), (b"/scrape", scrape))
                     for close in (False, True)}
        self.udp_announce_tail = udp_wire.encode_announce(0, 1800, STATS, fixed_peers(peers),
                                                          4)[8:]
        self.udp_scrape_entry = udp_wire.encode_scrape(0, [STATS])[8:]


class HttpResponder(asyncio.Protocol):
    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.buffer = b""
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4:]
            path = head[4: head.find(b" ", 4)].split(b"?", 1)[0]
            close = b"\nconnection: close" in head.lower()
            answer = self.answers.http.get((b"/scrape" if path.endswith(b"/scrape")
                                            else b"/announce", close))
            self.transport.write(answer)
            if close:
                self.transport.close()
                return


class UdpResponder(asyncio.DatagramProtocol):
    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) < 16:
            return
        action, transaction_id = struct.unpack_from(">II", data, 8)
        if action == udp_wire.ACTION_CONNECT:
            packet = udp_wire.encode_connect(transaction_id, b"MLconnid")
        elif action == udp_wire.ACTION_ANNOUNCE:
            packet = struct.pack(">II", action, transaction_id) + self.answers.udp_announce_tail
        elif action == udp_wire.ACTION_SCRAPE:
            packet = (struct.pack(">II", action, transaction_id)
                      + self.answers.udp_scrape_entry * ((len(data) - 16) // 20))
        else:
            packet = udp_wire.encode_error(transaction_id, "unknown action")
        self.transport.sendto(packet, addr)


async def serve(host: str, port: int, peers: int, max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    answers = Answers(peers)
    server = await loop.create_server(lambda: HttpResponder(answers), host, port, backlog=4096)
    bound = server.sockets[0].getsockname()[1]
    udp = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    udp.bind((host, bound))
    transport, _ = await loop.create_datagram_endpoint(lambda: UdpResponder(answers), sock=udp)
    print(bound, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), max_seconds)
    except TimeoutError:
        pass
    transport.close()
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.loadtest.responder",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="HTTP and UDP port (0: a free one)")
    parser.add_argument("--peers", type=int, default=50, help="peers in every announce answer")
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="stop by itself after this long (default 900)")
    args = parser.parse_args(argv)
    from .target import TargetError, parse_target

    host = f"[{args.host}]" if ":" in args.host else args.host
    try:
        parse_target(f"udp://{host}:1")
    except TargetError:
        parser.error("the responder listens on loopback only")
    from .runner import _new_loop

    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(serve(args.host, args.port, args.peers, args.max_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
