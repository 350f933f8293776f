"""The frontends' shortcuts answer as the long way does.

HTTP: `AnnounceNode` answers GET /announce, /announce/<key> and /scrape before FastAPI; the
same requests under a root path go through FastAPI's routes, and both give the same status,
headers and body. UDP: on an in-process store an answer runs to its end inside
`datagram_received`; a store that waits after all is carried on by a task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from services.announce.app import create_app
from services.announce.metrics import AnnounceMetrics
from services.announce.tracker import Tracker
from services.announce.udp import UdpTracker
from services.core import http as http_wire
from services.core import udp as udp_wire
from services.core.connection_id import ConnectionIds
from services.core.model import AnnounceRequest, Event, Peer, SwarmAnswer, SwarmStats
from services.settings import Settings
from services.stores.memory import MemoryPeerStore

H = "%41" * 20
ANNOUNCES = [
    f"info_hash={H}&peer_id={'B' * 20}&port=6881&left=0",
    f"info_hash={H}&peer_id={'C' * 20}&port=6882&left=5",
    f"info_hash={H}&peer_id={'D' * 20}&port=6883&left=5&compact=0",
    f"info_hash={H}&peer_id={'C' * 20}&port=6882&event=stopped",
    f"info_hash={H}&port=1",
    f"info_hash={H}&peer_id={'B' * 20}&port=1&numwant={'9' * 25}",
]
REQUESTS = ([("GET", "/announce", q) for q in ANNOUNCES] + [
    ("GET", "/announce/secretkey", ANNOUNCES[0]),
    ("GET", "/scrape", f"info_hash={H}"),
    ("GET", "/scrape", "info_hash=short"),
    ("GET", "/scrape", ""),
    ("POST", "/announce", ANNOUNCES[0]),
])


async def call(app: Any, method: str, path: str, query: str, root: str = "",
               headers: Sequence[tuple[bytes, bytes]] = ()) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "server": ("127.0.0.1", 6969), "client": ("127.0.0.1", 50000), "scheme": "http",
             "method": method, "root_path": root, "path": root + path,
             "raw_path": (root + path).encode(), "query_string": query.encode(),
             "headers": [(b"host", b"tracker"), *headers], "state": {}}
    await app(scope, receive, send)
    return sent


async def conversation(root: str, settings: Settings) -> list[list[dict[str, Any]]]:
    app = create_app(settings)
    return [await call(app, method, path, query, root) for method, path, query in REQUESTS]


@pytest.mark.parametrize("settings", [Settings(), Settings(trusted_proxies=["127.0.0.0/8"])],
                         ids=["direct", "behind a proxy"])
def test_http_shortcut_answers_as_fastapi_routes(settings: Settings) -> None:
    short = asyncio.run(conversation("", settings))
    routed = asyncio.run(conversation("/tracker", settings))
    assert short == routed
    statuses = [messages[0]["status"] for messages in short]
    assert statuses == [200] * 10 + [405]
    assert short[0][0]["headers"][1] == (b"content-type", b"text/plain; charset=utf-8")


def test_http_client_ip_from_a_trusted_proxy_header() -> None:
    async def external_ip(settings: Settings) -> bytes | None:
        app = create_app(settings)
        sent = await call(app, "GET", "/announce", ANNOUNCES[0],
                          headers=[(b"x-forwarded-for", b"198.51.100.7")])
        return http_wire.decode_announce_answer(sent[1]["body"]).external_ip

    assert asyncio.run(external_ip(Settings())) == bytes([127, 0, 0, 1])
    assert asyncio.run(external_ip(Settings(trusted_proxies=["127.0.0.0/8"]))) == \
        bytes([198, 51, 100, 7])


class Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, packet: bytes, addr: Any) -> None:
        self.sent.append(packet)

    def is_closing(self) -> bool:
        return False


class WaitingStore(MemoryPeerStore):
    """Says it is in-process, then waits anyway: once for a bare yield, once for a future."""

    async def announce(self, *args: Any, **kwargs: Any) -> SwarmAnswer:
        await asyncio.sleep(0)
        await asyncio.sleep(0.001)
        return await super().announce(*args, **kwargs)


def udp_frontend(store: MemoryPeerStore) -> tuple[UdpTracker, Transport, int]:
    settings = Settings()
    tracker = Tracker(settings, store, AnnounceMetrics("test"))
    ids = ConnectionIds(b"s" * 32, 120)
    frontend = UdpTracker(tracker, ids, settings)
    transport = Transport()
    frontend.connection_made(transport)  # type: ignore[arg-type]
    cid = int.from_bytes(ids.issue(bytes([127, 0, 0, 1]), tracker.clock()), "big")
    return frontend, transport, cid


def announce_packet(cid: int, port: int) -> bytes:
    request = AnnounceRequest(b"h" * 20, b"p" * 20, port, left=5, event=Event.STARTED)
    return udp_wire.build_announce(cid, port, request)


def test_udp_answer_on_an_in_process_store_needs_no_task() -> None:
    async def scenario() -> None:
        frontend, transport, cid = udp_frontend(MemoryPeerStore(peer_ttl=60))
        for port in (1, 2):
            frontend.datagram_received(announce_packet(cid, port), ("127.0.0.1", 40000))
        assert not frontend.tasks and len(transport.sent) == 2  # answered on the spot
        action, tid, answer = udp_wire.parse_response(transport.sent[1])
        assert (action, tid) == (udp_wire.ACTION_ANNOUNCE, 2)
        assert isinstance(answer, udp_wire.AnnounceAnswer)
        assert answer.peers == (Peer(bytes([127, 0, 0, 1]), 1),)
        assert answer.stats == SwarmStats(0, 2, 0)

    asyncio.run(scenario())


def test_udp_answer_that_waits_after_all_is_carried_on() -> None:
    async def scenario() -> None:
        frontend, transport, cid = udp_frontend(WaitingStore(peer_ttl=60))
        for port in (1, 2):
            frontend.datagram_received(announce_packet(cid, port), ("127.0.0.1", 40000))
        assert len(frontend.tasks) == 2 and not transport.sent
        await asyncio.wait_for(asyncio.gather(*frontend.tasks), 5)
        assert [udp_wire.parse_response(p)[:2] for p in transport.sent] == \
            [(udp_wire.ACTION_ANNOUNCE, 1), (udp_wire.ACTION_ANNOUNCE, 2)]
        assert frontend.tracker.inflight == 0

        frontend.datagram_received(announce_packet(cid, 3), ("127.0.0.1", 40000))
        frontend.connection_lost(None)  # shutdown cancels what is still waiting
        await asyncio.gather(*frontend.tasks, return_exceptions=True)
        assert frontend.tracker.inflight == 0 and len(transport.sent) == 2

    asyncio.run(scenario())
