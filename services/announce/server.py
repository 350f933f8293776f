"""`meridian serve`: bind the HTTP and UDP sockets, run the app, print the announce URLs.

Sockets are bound here, before the app starts, so HTTP and UDP share one port number (also when
port 0 asks for a free one) and IPv6 listeners are IPv6-only beside the IPv4 ones. uvicorn runs
the app on those sockets and turns SIGINT and SIGTERM into a clean shutdown, during which the
app's lifespan closes the UDP endpoints and the store.

With several workers, this process becomes a supervisor: it binds the TCP listeners, forks
the workers (which inherit them and accept in turn), and each worker binds its own UDP socket
on the same port with SO_REUSEPORT, so the kernel spreads datagrams across them. A worker
that dies is started again; SIGINT or SIGTERM stops them all by their PIDs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from services import __version__
from services.settings import Settings

from .app import create_app

log = logging.getLogger(__name__)


@dataclass
class Listeners:
    tcp: list[socket.socket] = field(default_factory=list)
    udp: list[socket.socket] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    port: int = 0

    def close(self) -> None:
        for sock in self.tcp + self.udp:
            sock.close()


class _Server(uvicorn.Server):
    """uvicorn's server, but SIGINT and SIGTERM only start a clean shutdown and exit 0.

    uvicorn re-raises a captured signal after shutting down, which would end `meridian serve`
    with a KeyboardInterrupt traceback or a signal status; operators' scripts want exit 0.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def _socket(address: str, kind: int, reuseport: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return sock


def bind_udp(addresses: list[str], port: int, reuseport: bool) -> list[socket.socket]:
    """UDP sockets on each address (a worker's own, when `reuseport`)."""
    sockets = []
    for address in addresses:
        udp = _socket(address, socket.SOCK_DGRAM, reuseport)
        try:
            udp.bind((address, port))
        except OSError as exc:
            udp.close()
            for sock in sockets:
                sock.close()
            raise SystemExit(f"cannot listen for UDP on {address} port {port}: {exc.strerror}. "
                             "Pick another --port, or stop what holds it.") from exc
        udp.setblocking(False)
        sockets.append(udp)
    return sockets


def bind(settings: Settings, reuseport: bool = False) -> Listeners:
    """Bind TCP and UDP on every listen address, all on one port number."""
    listeners = Listeners(port=settings.port)
    for address in settings.listen:
        tcp = _socket(address, socket.SOCK_STREAM)
        udp = _socket(address, socket.SOCK_DGRAM, reuseport)
        try:
            tcp.bind((address, listeners.port))
            listeners.port = tcp.getsockname()[1]
            udp.bind((address, listeners.port))
        except OSError as exc:
            tcp.close()
            udp.close()
            if exc.errno == errno.EADDRNOTAVAIL and len(settings.listen) > 1:
                log.warning("cannot listen on %s (%s); going on without it", address, exc)
                continue
            listeners.close()
            raise SystemExit(
                f"cannot listen on {address} port {listeners.port}: {exc.strerror}. "
                "Pick another --port, or stop what holds it.") from exc
        tcp.listen(1024)
        tcp.setblocking(False)
        udp.setblocking(False)
        listeners.tcp.append(tcp)
        listeners.udp.append(udp)
        listeners.addresses.append(address)
    if not listeners.tcp:
        raise SystemExit("no listen address could be bound; check --host / MERIDIAN_LISTEN")
    return listeners


def _display_host(address: str) -> str:
    loopback = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)
    return f"[{loopback}]" if ":" in loopback else loopback


def announce_urls(listeners: Listeners) -> list[tuple[str, str]]:
    urls = []
    for address in listeners.addresses:
        host = _display_host(address)
        urls.append(("HTTP", f"http://{host}:{listeners.port}/announce"))
        urls.append(("UDP", f"udp://{host}:{listeners.port}/announce"))
    return urls


def banner(settings: Settings, listeners: Listeners) -> str:
    lines = [f"Meridian {__version__} (region {settings.region}, store {settings.store}) "
             "is serving:"]
    lines += [f"  {proto:<4} announce  {url}" for proto, url in announce_urls(listeners)
              if proto == "HTTP" or settings.udp_enabled]
    first = announce_urls(listeners)[0][1].rsplit("/", 1)[0]
    lines.append(f"  scrape, health, ready, metrics under {first}/")
    if any(a in ("0.0.0.0", "::") for a in listeners.addresses):
        lines.append("  (listening on all addresses; loopback URLs shown)")
    lines.append("Stop with Ctrl-C (SIGINT) or SIGTERM.")
    return "\n".join(lines)


async def serve(settings: Settings, listeners: Listeners,
                on_ready: Callable[[str], None] | None = None) -> None:
    app = create_app(settings, udp_sockets=listeners.udp)
    config = uvicorn.Config(app, lifespan="on", access_log=False, proxy_headers=False,
                            server_header=False, log_level=settings.log_level,
                            timeout_graceful_shutdown=5)
    server = _Server(config)

    async def announce_when_started() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.02)
        if on_ready is not None:
            on_ready(banner(settings, listeners))

    watcher = asyncio.create_task(announce_when_started())
    try:
        await server.serve(sockets=listeners.tcp)
    finally:
        watcher.cancel()
        listeners.close()


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main)


def _print(text: str) -> None:
    print(text, flush=True)


def run(settings: Settings) -> int:
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    workers = settings.effective_workers
    if workers == 1:
        _run_loop(serve(settings, bind(settings), _print))
        return 0
    return supervise(settings, workers)


def _worker(settings: Settings, listeners: Listeners, slot: int) -> None:
    """One forked worker: the inherited TCP listeners plus its own SO_REUSEPORT UDP sockets.

    Its index (not its PID) names its spool, so a restarted worker replays what it left.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    settings = settings.model_copy(update={"worker": slot})
    own = Listeners(tcp=listeners.tcp, addresses=listeners.addresses, port=listeners.port,
                    udp=bind_udp(listeners.addresses, listeners.port, reuseport=True)
                    if settings.udp_enabled else [])
    _run_loop(serve(settings, own))


def supervise(settings: Settings, workers: int) -> int:
    """Run `workers` worker processes on shared ports until SIGINT or SIGTERM."""
    import multiprocessing
    import secrets
    import urllib.request

    from pydantic import SecretStr

    if settings.udp_secret is None:
        # Every worker must accept every other worker's connection ids.
        settings = settings.model_copy(update={"udp_secret": SecretStr(secrets.token_hex(32))})
        log.warning("MERIDIAN_UDP_SECRET is not set: the workers share a random one; set one "
                    "shared secret on every node of every region")
    listeners = bind(settings, reuseport=True)
    for sock in listeners.udp:  # the workers bind their own; this only proved the port free
        sock.close()
    listeners.udp = []
    context = multiprocessing.get_context("fork")
    children: dict[int, multiprocessing.process.BaseProcess] = {}
    stopping = False

    def start(slot: int) -> None:
        child = context.Process(target=_worker, args=(settings, listeners, slot),
                                name=f"meridian-worker-{slot}")
        child.start()
        children[slot] = child

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for slot in range(workers):
        start(slot)
    health = announce_urls(listeners)[0][1].rsplit("/", 1)[0] + "/health"
    deadline = time.monotonic() + 30
    while not stopping and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(health, timeout=1):
                break
        except OSError:
            time.sleep(0.05)
    if not stopping:
        _print(banner(settings, listeners).replace(
            "is serving:", f"is serving with {workers} workers:", 1))
    restarts: list[float] = []
    while not stopping:
        time.sleep(0.2)
        for slot, child in list(children.items()):
            if not child.is_alive() and not stopping:
                restarts = [t for t in restarts if time.monotonic() - t < 60] + [time.monotonic()]
                log.warning("worker %d (pid %s) exited with %s; starting it again", slot,
                            child.pid, child.exitcode)
                if len(restarts) > 10 * workers:
                    log.error("workers keep dying (more than %d restarts a minute); stopping",
                              10 * workers)
                    stopping = True
                    break
                start(slot)
    for child in children.values():
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
    for child in children.values():
        child.join(15)
        if child.is_alive():
            child.kill()
            child.join(5)
    listeners.close()
    return 0
