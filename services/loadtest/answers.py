"""Is this answer a valid answer to what was asked? Decoded with the tracker's own codecs.

Pure functions, bytes in: each raises `BadAnswer(kind, detail)` when the answer is malformed,
a refusal, or inconsistent with the request (more peers than numwant, a scrape answer about
torrents nobody asked for, a UDP answer of the wrong action). The kind is what the report
counts errors by.
"""

from __future__ import annotations

from services.core import http as http_wire
from services.core import udp as udp_wire
from services.core.errors import ClientError
from services.core.model import AnnounceRequest

from .workload import Scrape


class BadAnswer(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def _check_peers(count: int, interval: int, request: AnnounceRequest) -> int:
    if interval <= 0:
        raise BadAnswer("invalid_answer", f"interval {interval} is not positive")
    if request.numwant and count > request.numwant:  # numwant=0 (stopped) is advisory
        raise BadAnswer("invalid_answer", f"{count} peers for numwant {request.numwant}")
    return count


def check_http_announce(body: bytes, request: AnnounceRequest) -> int:
    """Validate an announce answer; return how many peers it gave."""
    try:
        answer = http_wire.decode_announce_answer(body)
    except (ValueError, ClientError) as exc:
        raise BadAnswer("invalid_answer", f"announce: {exc}") from None
    if answer.failure is not None:
        raise BadAnswer("tracker_refused", answer.failure)
    return _check_peers(len(answer.peers), answer.interval, request)


def check_http_scrape(body: bytes, scrape: Scrape) -> int:
    try:
        files = http_wire.decode_scrape_answer(body)
    except (ValueError, ClientError) as exc:
        kind = "tracker_refused" if "refused" in str(exc) else "invalid_answer"
        raise BadAnswer(kind, f"scrape: {exc}") from None
    # Trackers may leave out torrents they do not know (opentracker does), never add others.
    unasked = set(files) - set(scrape.info_hashes)
    if unasked:
        raise BadAnswer("invalid_answer", f"scrape answer names {len(unasked)} unasked torrents")
    return 0


def check_udp(data: bytes, asked: AnnounceRequest | Scrape | None,
              family_length: int = 4) -> bytes | int:
    """Validate a UDP answer to a connect (`asked` None), announce or scrape.

    `family_length` is 4 over IPv4 and 16 over IPv6: BEP 15 answers carry peers of the
    family the request came over.

    Returns the connection id for a connect answer, else how many peers it gave.
    """
    try:
        action, _, payload = udp_wire.parse_response(data, family_length)
    except (ValueError, ClientError) as exc:
        raise BadAnswer("invalid_answer", str(exc)) from None
    if action == udp_wire.ACTION_ERROR:
        raise BadAnswer("tracker_refused", str(payload))
    if asked is None:
        if action != udp_wire.ACTION_CONNECT or not isinstance(payload, bytes):
            raise BadAnswer("invalid_answer", f"action {action} in answer to a connect")
        return payload
    if isinstance(asked, Scrape):
        if action != udp_wire.ACTION_SCRAPE or not isinstance(payload, list):
            raise BadAnswer("invalid_answer", f"action {action} in answer to a scrape")
        if len(payload) != len(asked.info_hashes):
            raise BadAnswer("invalid_answer", f"{len(payload)} counts for "
                            f"{len(asked.info_hashes)} torrents scraped")
        return 0
    if action != udp_wire.ACTION_ANNOUNCE or not isinstance(payload, udp_wire.AnnounceAnswer):
        raise BadAnswer("invalid_answer", f"action {action} in answer to an announce")
    return _check_peers(len(payload.peers), payload.interval, asked)
