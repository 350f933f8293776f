"""The app factory: `create_app(settings)` wires the whole announce node from one settings object.

The lifespan owns every long-lived thing: the store, the tracker's background sweep, and the UDP
endpoints (when the server hands it bound sockets), and stops them together. The HTTP routes are
thin: raw query bytes to `services.core.http`, the tracker, bytes back.
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

from services import __version__
from services.core import http as wire
from services.core.connection_id import ConnectionIds
from services.core.errors import ClientError
from services.settings import Settings
from services.stores import PeerStore, open_store
from services.stream.emitter import EventEmitter

from .client_ip import ClientAddress
from .metrics import AnnounceMetrics
from .tracker import Tracker
from .udp import UdpTracker

log = logging.getLogger(__name__)
_BENCODE = "text/plain"


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
    limits = wire.QueryLimits(settings.max_query_bytes, settings.max_scrape_hashes)
    addresses = ClientAddress(settings.trusted_proxies, settings.real_ip_header)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events = emitter
        if events is None and settings.kafka_bootstrap:
            events = build_emitter(settings, metrics)
        if events is not None:
            await events.start()  # never fails for Kafka's sake: it spools and retries
            tracker.event_sinks.append(events.emit)
        await tracker.start()
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
            if events is not None:
                await events.close(settings.emitter_close_timeout)
            await tracker.close()

    app = FastAPI(title="Meridian announce node", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.tracker = tracker
    app.state.metrics = metrics

    def failure(exc: ClientError, action: str) -> Response:
        metrics.bad_requests.labels("http", exc.kind).inc()
        metrics.requests.labels("http", action, "refused").inc()
        if exc.kind == "overloaded":
            metrics.shed.labels("http").inc()
        return Response(wire.encode_failure(exc.reason, exc.retry_in_minutes),
                        media_type=_BENCODE)

    def client_ip(request: Request) -> bytes:
        host = request.client.host if request.client else "127.0.0.1"
        return addresses.resolve(host, request.headers.get(addresses.header))

    async def announce(request: Request, key: bytes | None) -> Response:
        try:
            parsed = wire.parse_announce(request.scope["query_string"], limits, key=key)
            reply = await tracker.announce(parsed, client_ip(request), "http")
        except ClientError as exc:
            return failure(exc, "announce")
        metrics.requests.labels("http", "announce", "ok").inc()
        return Response(wire.encode_announce(reply, parsed), media_type=_BENCODE)

    @app.get("/announce")
    async def public_announce(request: Request) -> Response:
        return await announce(request, None)

    @app.get("/announce/{key}")
    async def private_announce(request: Request, key: str) -> Response:
        return failure(ClientError(
            "private announce keys (/announce/<key>) are not enabled on this tracker; "
            "announce to /announce", "private_disabled"), "announce")

    @app.get("/scrape")
    async def scrape(request: Request) -> Response:
        try:
            parsed = wire.parse_scrape(request.scope["query_string"], limits)
            files = await tracker.scrape(parsed.info_hashes)
        except ClientError as exc:
            return failure(exc, "scrape")
        metrics.requests.labels("http", "scrape", "ok").inc()
        return Response(wire.encode_scrape(files, settings.min_announce_interval),
                        media_type=_BENCODE)

    @app.get("/health")
    async def health() -> dict[str, str | int]:
        return {"status": "ok", "version": __version__, "region": settings.region,
                "node": settings.node, "pid": os.getpid()}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        try:
            await tracker.store.ping()
            rebuilding = await tracker.store.get_flag("rebuilding")
        except Exception as exc:
            return JSONResponse({"ready": False, "store": f"unavailable: {exc}"}, status_code=503)
        if rebuilding:
            # Announces are still answered; a load balancer may prefer another region meanwhile.
            return JSONResponse({"ready": False, "store": "ok", "rebuilding": True},
                                status_code=503)
        return JSONResponse({"ready": True, "store": "ok", "rebuilding": False})

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
        metrics.errors.labels("http").inc()
        log.exception("internal error answering %s", request.url.path)
        return Response(wire.encode_failure("internal tracker error"), status_code=500,
                        media_type=_BENCODE)

    return app
