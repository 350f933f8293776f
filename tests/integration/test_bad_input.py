"""Bad input, as a table: each malformed request gets a clear answer, is counted in a metric,
and the tracker still serves good announces afterwards."""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator

import pytest

from services.core import bencode
from services.core import udp as udp_wire
from services.core.model import AnnounceRequest
from tests.clients import HttpClient, UdpClient
from tests.servers import RunningTracker

H = "info_hash=" + "%41" * 20
P = "peer_id=" + "B" * 20
GOOD = f"/announce?{H}&{P}&port=6881&left=0"

# (name, method, target, expected status, metric reason, words the failure must contain)
HTTP_CASES = [
    ("missing info_hash", "GET", f"/announce?{P}&port=1", 200, "missing_info_hash", "info_hash"),
    ("short info_hash", "GET", f"/announce?info_hash=abc&{P}&port=1", 200, "bad_info_hash", "20 bytes"),
    ("long info_hash", "GET", f"/announce?info_hash={'A' * 21}&{P}&port=1", 200, "bad_info_hash", "20 bytes"),
    ("missing peer_id", "GET", f"/announce?{H}&port=1", 200, "missing_peer_id", "peer_id"),
    ("short peer_id", "GET", f"/announce?{H}&peer_id=xy&port=1", 200, "bad_peer_id", "peer_id"),
    ("missing port", "GET", f"/announce?{H}&{P}", 200, "bad_port", "port"),
    ("port 0", "GET", f"/announce?{H}&{P}&port=0", 200, "bad_port", "port"),
    ("port 65536", "GET", f"/announce?{H}&{P}&port=65536", 200, "bad_port", "port"),
    ("non-numeric left", "GET", f"/announce?{H}&{P}&port=1&left=lots", 200, "bad_number", "left"),
    ("negative uploaded", "GET", f"/announce?{H}&{P}&port=1&uploaded=-5", 200, "bad_number", "uploaded"),
    ("huge downloaded", "GET", f"/announce?{H}&{P}&port=1&downloaded={'9' * 30}", 200, "bad_number", "downloaded"),
    ("huge numwant", "GET", f"/announce?{H}&{P}&port=1&numwant={'9' * 25}", 200, "bad_numwant", "numwant"),
    ("unknown event", "GET", f"/announce?{H}&{P}&port=1&event=exploded", 200, "bad_event", "event"),
    ("repeated info_hash", "GET", f"/announce?{H}&{H}&{P}&port=1", 200, "repeated_parameter", "more than once"),
    ("query of many kilobytes", "GET", f"/announce?{H}&{P}&port=1&pad={'x' * 10000}", 200, "query_too_long", "limit"),
    ("private key path", "GET", f"/announce/secretkey?{H}&{P}&port=1", 200, "private_disabled", "/announce"),
    ("scrape of a bad hash", "GET", "/scrape?info_hash=short", 200, "bad_info_hash", "20 bytes"),
    ("scrape of too many hashes", "GET", "/scrape?" + "&".join(
        "info_hash=" + os.urandom(20).hex()[:20] for _ in range(80)), 200, "too_many_hashes", "limit"),
    ("full scrape while disabled", "GET", "/scrape", 200, "full_scrape_disabled", "disabled"),
    ("unknown path", "GET", "/wp-admin.php", 404, "unknown_path", "no such path"),
    ("POST announce", "POST", GOOD, 405, "bad_method", "not allowed"),
    ("DELETE scrape", "DELETE", "/scrape", 405, "bad_method", "not allowed"),
]


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match.group(1).split(","))) == want:
            return float(match.group(2))
    return 0.0


@pytest.fixture(scope="module")
def client(tracker: RunningTracker) -> Iterator[HttpClient]:
    http = HttpClient(tracker.base())
    yield http
    http.close()


@pytest.mark.parametrize("name, method, target, status, reason, words", HTTP_CASES,
                         ids=[c[0] for c in HTTP_CASES])
def test_http_bad_input(client: HttpClient, name: str, method: str, target: str, status: int,
                        reason: str, words: str) -> None:
    before = metric(client.raw("/metrics").text, "meridian_bad_requests_total",
                    protocol="http", reason=reason)
    response = client.raw(target, method)
    assert response.status_code == status
    body = bencode.decode(response.content)
    assert isinstance(body, dict) and words in body[b"failure reason"].decode()  # type: ignore[union-attr]
    after = metric(client.raw("/metrics").text, "meridian_bad_requests_total",
                   protocol="http", reason=reason)
    assert after == before + 1
    good = bencode.decode(client.raw(GOOD).content)
    assert isinstance(good, dict) and b"interval" in good


def _announce_packet(cid: int, **changes: object) -> bytes:
    request = AnnounceRequest(os.urandom(20), b"C" * 20, 4321, left=0)
    return udp_wire.build_announce(cid, 99, request)


# (name, builder(connection_id) -> packet, "error" | "silent", metric reason)
UDP_CASES = [
    ("short datagram", lambda cid: b"\x00" * 10, "silent", "short"),
    ("oversized datagram", lambda cid: struct.pack(">QII", cid, 1, 5) + b"\x00" * 5000, "silent", "oversized"),
    ("unknown action", lambda cid: struct.pack(">QII", cid, 42, 5), "error", "unknown_action"),
    ("connect without protocol id", lambda cid: struct.pack(">QII", 1234, 0, 5), "error", "bad_protocol_id"),
    ("wrong connection id", lambda cid: _announce_packet(cid ^ 0xFFFF), "error", "bad_connection_id"),
    ("short announce", lambda cid: _announce_packet(cid)[:60], "error", "short_announce"),
    ("port 0", lambda cid: _announce_packet(cid)[:96] + b"\x00\x00", "error", "bad_port"),
    ("unknown event", lambda cid: _announce_packet(cid)[:80] + struct.pack(">I", 9) + _announce_packet(cid)[84:], "error", "bad_event"),
    ("truncated BEP 41 option", lambda cid: _announce_packet(cid) + b"\x02\x10ab", "error", "bad_option"),
    ("scrape of half a hash", lambda cid: struct.pack(">QII", cid, 2, 5) + b"x" * 10, "error", "bad_scrape"),
    ("scrape of 75 hashes", lambda cid: struct.pack(">QII", cid, 2, 5) + os.urandom(20 * 75), "error", "too_many_hashes"),
]


@pytest.mark.parametrize("name, build, outcome, reason", UDP_CASES, ids=[c[0] for c in UDP_CASES])
def test_udp_bad_input(tracker: RunningTracker, client: HttpClient, name: str, build, outcome: str,
                       reason: str) -> None:
    udp = UdpClient("127.0.0.1", tracker.port)
    try:
        cid = udp.connect()
        before = metric(client.raw("/metrics").text, "meridian_bad_requests_total",
                        protocol="udp", reason=reason)
        packet = build(cid)
        if outcome == "silent":
            assert udp.silent(packet)
        else:
            action, _, message = udp_wire.parse_response(udp.exchange(packet))
            assert action == udp_wire.ACTION_ERROR and isinstance(message, str) and message
        after = metric(client.raw("/metrics").text, "meridian_bad_requests_total",
                       protocol="udp", reason=reason)
        assert after == before + 1
        answer = udp.announce(AnnounceRequest(os.urandom(20), b"D" * 20, 4322, left=0))
        assert answer.interval > 0
    finally:
        udp.close()
