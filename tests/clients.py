"""Minimal HTTP and UDP tracker clients for black-box tests, built on the core's own codecs."""

from __future__ import annotations

import random
import socket
from dataclasses import replace

import httpx

from services.core import http as http_wire
from services.core import udp as udp_wire
from services.core.model import AnnounceRequest, SwarmStats


class HttpClient:
    def __init__(self, base: str) -> None:
        self.base = base
        self.client = httpx.Client(timeout=5)

    def close(self) -> None:
        self.client.close()

    def raw(self, path_and_query: str | bytes, method: str = "GET") -> httpx.Response:
        target = path_and_query.decode("latin-1") if isinstance(path_and_query, bytes) \
            else path_and_query
        return self.client.request(method, self.base + target)

    def announce(self, request: AnnounceRequest) -> http_wire.AnnounceAnswer:
        response = self.raw(b"/announce?" + http_wire.build_announce_query(request))
        assert response.status_code == 200, response.text
        return http_wire.decode_announce_answer(response.content)

    def scrape(self, hashes: list[bytes]) -> dict[bytes, SwarmStats]:
        response = self.raw(b"/scrape?" + http_wire.build_scrape_query(hashes))
        assert response.status_code == 200, response.text
        return http_wire.decode_scrape_answer(response.content)


class UdpClient:
    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.settimeout(3)
        self.address = (host, port)
        self.family_length = 16 if family == socket.AF_INET6 else 4
        self.connection_id: int | None = None

    def close(self) -> None:
        self.sock.close()

    def exchange(self, packet: bytes) -> bytes:
        self.sock.sendto(packet, self.address)
        data, _ = self.sock.recvfrom(65536)
        return data

    def silent(self, packet: bytes, wait: float = 0.3) -> bool:
        """True if the tracker sends nothing back within `wait` seconds."""
        self.sock.sendto(packet, self.address)
        self.sock.settimeout(wait)
        try:
            self.sock.recvfrom(65536)
            return False
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(3)

    def connect(self) -> int:
        tid = random.getrandbits(32)
        action, got_tid, payload = udp_wire.parse_response(self.exchange(udp_wire.build_connect(tid)))
        assert (action, got_tid) == (udp_wire.ACTION_CONNECT, tid), payload
        assert isinstance(payload, bytes)
        self.connection_id = int.from_bytes(payload, "big")
        return self.connection_id

    def announce(self, request: AnnounceRequest) -> udp_wire.AnnounceAnswer:
        if self.connection_id is None:
            self.connect()
        assert self.connection_id is not None
        tid = random.getrandbits(32)
        if request.left is None:
            request = replace(request, left=0)
        data = self.exchange(udp_wire.build_announce(self.connection_id, tid, request))
        action, got_tid, payload = udp_wire.parse_response(data, self.family_length)
        assert action == udp_wire.ACTION_ANNOUNCE, payload
        assert got_tid == tid
        assert isinstance(payload, udp_wire.AnnounceAnswer)
        return payload

    def scrape(self, hashes: list[bytes]) -> list[SwarmStats]:
        if self.connection_id is None:
            self.connect()
        assert self.connection_id is not None
        tid = random.getrandbits(32)
        action, got_tid, payload = udp_wire.parse_response(
            self.exchange(udp_wire.build_scrape(self.connection_id, tid, hashes)))
        assert (action, got_tid) == (udp_wire.ACTION_SCRAPE, tid), payload
        assert isinstance(payload, list)
        return payload
