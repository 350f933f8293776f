"""The app factory: `create_app(settings)` wires the whole announce node from one settings object.

The lifespan owns every long-lived thing: the store, the tracker's background sweep, and the UDP
endpoints (when the server hands it bound sockets), and stops them together. The HTTP routes are
thin: raw query bytes to `services.core.http`, the tracker, bytes back.

`GET /announce`, `/announce/<key>` and `/scrape` carry nearly all the traffic and need nothing
of a framework but the raw query, so `AnnounceNode` answers them as bare ASGI before FastAPI's
middleware, routing and dependency solving, which cost more than the announce itself. The same
`HttpAnnounce` answers them through FastAPI's routes when a request does not take that path (a
root path is set); any other method or path goes to FastAPI, for its 404 and 405.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from services import __version__
from services.core import http as wire
from services.core.connection_id import ConnectionIds
from services.core.errors import ClientError
from services.ops.emergency import EmergencyWatcher
from services.settings import Settings
from services.stores import PeerStore, open_store
from services.stream.emitter import EventEmitter

from .client_ip import ClientAddress
from .metrics import AnnounceMetrics
from .tracker import Tracker
from .udp import UdpTracker

log = logging.getLogger(__name__)
_BENCODE = "text/plain"
_BENCODE_HEADER = (b"content-type", b"text/plain; charset=utf-8")  # as Starlette sends _BENCODE
_PRIVATE_DISABLED = ("private announce keys (/announce/<key>) are not enabled on this tracker; "
                     "announce to /announce")


class HttpAnnounce:
    """The HTTP announce and scrape answers, from the ASGI scope to a bencoded body.

    Every answer is 200 with a body, a refusal included (clients read its `failure reason`).
    An exception other than `ClientError` is our fault: the caller answers 500 (`failed`).
    """

    def __init__(self, settings: Settings, tracker: Tracker, metrics: AnnounceMetrics) -> None:
        self.tracker = tracker
        self.metrics = metrics
        self.min_interval = settings.min_announce_interval
        self.limits = wire.QueryLimits(settings.max_query_bytes, settings.max_scrape_hashes)
        self.addresses = ClientAddress(settings.trusted_proxies, settings.real_ip_header)

    def failure(self, exc: ClientError, action: str) -> bytes:
        self.metrics.bad_requests.labels("http", exc.kind).inc()
        self.metrics.requests.labels("http", action, "refused").inc()
        if exc.kind == "overloaded":
            self.metrics.shed.labels("http").inc()
        return wire.encode_failure(exc.reason, exc.retry_in_minutes)

    def failed(self, path: str) -> bytes:
        """Count and log the exception being handled; the body of its 500 answer."""
        self.metrics.errors.labels("http").inc()
        log.exception("internal error answering %s", path)
        return wire.encode_failure("internal tracker error")

    def client_ip(self, scope: Scope) -> bytes:
        client = scope.get("client")
        header = None
        if self.addresses.reads_header:
            name = self.addresses.raw_header
            header = next((v.decode("latin-1") for k, v in scope["headers"] if k == name), None)
        return self.addresses.resolve(client[0] if client else "127.0.0.1", header)

    async def announce(self, scope: Scope) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """The answer's body, and the headers that tag a degraded (stale) answer."""
        try:
            parsed = wire.parse_announce(scope["query_string"], self.limits)
            reply = await self.tracker.announce(parsed, self.client_ip(scope), "http")
        except ClientError as exc:
            return self.failure(exc, "announce"), []
        self.metrics.answered("http", "announce").inc()
        tags = [] if reply.stale_age is None else [
            (b"x-meridian-stale", b"1"), (b"x-meridian-stale-age", b"%d" % int(reply.stale_age))]
        return wire.encode_announce(reply, parsed), tags

    def private_announce(self) -> bytes:
        return self.failure(ClientError(_PRIVATE_DISABLED, "private_disabled"), "announce")

    async def scrape(self, scope: Scope) -> bytes:
        try:
            parsed = wire.parse_scrape(scope["query_string"], self.limits)
            files = await self.tracker.scrape(parsed.info_hashes)
        except ClientError as exc:
            return self.failure(exc, "scrape")
        self.metrics.answered("http", "scrape").inc()
        return wire.encode_scrape(files, self.min_interval)


class AnnounceNode(FastAPI):
    """FastAPI, with `GET /announce`, `/announce/<key>` and `/scrape` answered before it.

    Their answers are the ones FastAPI's routes below give (the same `HttpAnnounce`), with the
    same headers. Anything else, and any request under a root path, goes through FastAPI.
    """

    http_announce: HttpAnnounce | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        frontend = self.http_announce
        if (frontend is None or scope["type"] != "http" or scope["method"] != "GET"
                or scope.get("root_path")):
            return await super().__call__(scope, receive, send)
        path = scope["path"]
        tags: list[tuple[bytes, bytes]] = []
        try:
            if path == "/announce":
                body, tags = await frontend.announce(scope)
            elif path == "/scrape":
                body = await frontend.scrape(scope)
            elif path.startswith("/announce/") and path.find("/", 10) < 0 and len(path) > 10:
                body = frontend.private_announce()
            else:
                return await super().__call__(scope, receive, send)
            status = 200
        except Exception:
            body, status = frontend.failed(path), 500
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", b"%d" % len(body)), _BENCODE_HEADER,
                                *tags]})
        await send({"type": "http.response.body", "body": body})


def connection_ids(settings: Settings) -> ConnectionIds:
    if settings.udp_secret is None:
        log.warning("MERIDIAN_UDP_SECRET is not set: UDP connection ids are valid on this "
                    "process only. Set one shared secret on every node of every region.")
        secret = os.urandom(32)
    else:
        secret = settings.udp_secret.get_secret_value().encode()
    return ConnectionIds(secret, settings.connection_id_lifetime)


def build_emitter(settings: Settings, metrics: AnnounceMetrics) -> EventEmitter:
    return EventEmitter(
        bootstrap_servers=settings.kafka_bootstrap, topic=settings.topic(),
        spool_path=settings.spool_path, registry=metrics.registry,
        queue_max=settings.event_queue_max, spool_max_bytes=settings.spool_max_bytes,
        spool_fsync=settings.spool_fsync, spool_fsync_interval_ms=settings.spool_fsync_interval_ms,
        linger_ms=settings.kafka_linger_ms, batch_max=settings.kafka_batch_max,
        stall_ms=settings.kafka_stall_ms, request_timeout_ms=settings.kafka_request_timeout_ms,
        client_id=f"meridian-{settings.region}-{settings.node}-w{settings.worker}")


def create_app(settings: Settings, *, store: PeerStore | None = None,
               udp_sockets: Sequence[socket.socket] = (),
               emitter: EventEmitter | None = None) -> FastAPI:
    """The announce node: HTTP routes, plus UDP on `udp_sockets` while the app runs, and
    announce events to Kafka when `settings.kafka_bootstrap` is set."""
    metrics = AnnounceMetrics(settings.region)
    tracker = Tracker(settings, store if store is not None else open_store(settings), metrics)
    if hasattr(tracker.store, "counts"):
        metrics.watch_store(tracker.store.counts)
    frontend = HttpAnnounce(settings, tracker, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events = emitter
        if events is None and settings.kafka_bootstrap:
            events = build_emitter(settings, metrics)
        if events is not None:
            await events.start()  # never fails for Kafka's sake: it spools and retries
            tracker.event_sinks.append(events.emit)
        await tracker.start()
        watcher = None
        if settings.shared_store:
            watcher = EmergencyWatcher(
                settings, tracker.store, poll_interval=settings.emergency_poll_interval,
                on_change=lambda active, _state: metrics.emergency.set(1 if active else 0))
            await watcher.start()
            tracker.emergency = watcher
        transports: list[asyncio.DatagramTransport] = []
        if udp_sockets and settings.udp_enabled:
            loop = asyncio.get_running_loop()
            ids = connection_ids(settings)
            for sock in udp_sockets:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: UdpTracker(tracker, ids, settings), sock=sock)
                transports.append(transport)
        try:
            yield
        finally:
            for transport in transports:
                transport.close()
            if watcher is not None:
                await watcher.close()
            if events is not None:
                await events.close(settings.emitter_close_timeout)
            await tracker.close()

    app = AnnounceNode(title="Meridian announce node", version=__version__, lifespan=lifespan,
                       docs_url=None, redoc_url=None, openapi_url=None)
    app.http_announce = frontend
    app.state.tracker = tracker
    app.state.metrics = metrics

    def bencoded(body: bytes) -> Response:
        return Response(body, media_type=_BENCODE)

    # Reached only when AnnounceNode hands the request on (under a root path); otherwise they
    # are here for FastAPI's 405 to other methods on these paths.
    @app.get("/announce")
    async def public_announce(request: Request) -> Response:
        body, tags = await frontend.announce(request.scope)
        return Response(body, media_type=_BENCODE,
                        headers={k.decode(): v.decode() for k, v in tags})

    @app.get("/announce/{key}")
    async def private_announce(request: Request, key: str) -> Response:
        return bencoded(frontend.private_announce())

    @app.get("/scrape")
    async def scrape(request: Request) -> Response:
        return bencoded(await frontend.scrape(request.scope))

    @app.get("/health")
    async def health() -> dict[str, str | int]:
        return {"status": "ok", "version": __version__, "region": settings.region,
                "node": settings.node, "pid": os.getpid()}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        """503 while the store is unreachable or the region rebuilds: announces are still
        answered (from the stale cache), but geo-DNS may prefer a healthy region meanwhile."""
        status = {"breaker": tracker.breaker.state.value, "emergency": tracker.in_emergency}
        try:
            await tracker.store.ping()
            rebuilding = await tracker.store.get_flag("rebuilding")
        except Exception as exc:
            return JSONResponse({"ready": False, "store": f"unavailable: {exc}", **status},
                                status_code=503)
        if rebuilding:
            return JSONResponse({"ready": False, "store": "ok", "rebuilding": True, **status},
                                status_code=503)
        return JSONResponse({"ready": True, "store": "ok", "rebuilding": False, **status})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        reason = {404: "unknown_path", 405: "bad_method"}.get(exc.status_code, "http_error")
        metrics.bad_requests.labels("http", reason).inc()
        message = {404: f"no such path {request.url.path}; announce to /announce",
                   405: f"method {request.method} not allowed; use GET"}.get(
                       exc.status_code, str(exc.detail))
        return Response(wire.encode_failure(message), status_code=exc.status_code,
                        media_type=_BENCODE)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> Response:
        return Response(frontend.failed(request.url.path), status_code=500, media_type=_BENCODE)

    return app
