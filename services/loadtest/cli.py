"""The `meridian loadtest` subcommand: `add_parser(subparsers)` registers it, `run(args)` runs it.

Exit status: 0 when the run completed (its errors, if any, are in the report), 1 when it could
not run (nothing listening, a worker failed), 2 for a bad command line or a refused target.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

from .load import RunError
from .record import render_json, render_table
from .runner import RunConfig
from .runner import run as run_load
from .target import TargetError, parse_target
from .workload import MAX_PEERS, WorkloadShape, info_hashes

MAX_DURATION = 3600.0
DEFAULTS = WorkloadShape()
EXAMPLES = """\
examples:
  meridian loadtest --url http://127.0.0.1:6969/announce --duration 10
  meridian loadtest --url udp://127.0.0.1:6969 --duration 5 --json
  meridian loadtest --url http://127.0.0.1:6969/announce --keep-alive off --rate 2000
  meridian loadtest --self-test --protocol udp --duration 5     # the generator's own ceiling
  meridian loadtest --torrents 1000 --seed 7 --print-info-hashes > whitelist
"""


def _positive(kind: type[int] | type[float]):  # type: ignore[no-untyped-def]
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not a positive number")
        return value
    return parse


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "loadtest", help="send announce and scrape load to a tracker on this machine",
        description="Send HTTP or UDP announce and scrape load of a realistic shape to a\n"
                    "tracker on loopback, validate every answer with Meridian's own codecs,\n"
                    "and report requests per second, latency percentiles and errors.\n"
                    "Bounded by --duration and --requests; loopback targets only.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_argument_group("target")
    target.add_argument("--url", help="http://HOST:PORT/announce or udp://HOST:PORT "
                                      "(HOST must be loopback)")
    target.add_argument("--protocol", choices=("http", "udp"),
                        help="checked against the URL's scheme, which decides; with --self-test "
                             "it picks the responder's protocol (default udp)")
    target.add_argument("--self-test", action="store_true",
                        help="load a trivial built-in responder instead of a tracker, to measure "
                             "this generator's own ceiling")
    bounds = parser.add_argument_group("bounds and pacing")
    bounds.add_argument("--duration", type=_positive(float), default=10.0, metavar="S",
                        help=f"seconds to send for (default 10, at most {MAX_DURATION:g})")
    bounds.add_argument("--requests", type=_positive(int), metavar="N",
                        help="stop after this many requests (default: no count bound)")
    bounds.add_argument("--window", type=_positive(int), default=64, metavar="W",
                        help="requests in flight at most; for HTTP with keep-alive, the number "
                             "of connections (default 64)")
    bounds.add_argument("--rate", type=_positive(float), metavar="R",
                        help="send R requests per second on a fixed schedule (open loop) instead "
                             "of as fast as answers come back")
    bounds.add_argument("--timeout", type=_positive(float), default=2.0, metavar="S",
                        help="seconds before an unanswered request counts as an error (default 2)")
    bounds.add_argument("--workers", type=_positive(int), default=1, metavar="N",
                        help="worker processes sharing the load (default 1; more only help with "
                             "spare cores)")
    shape = parser.add_argument_group("traffic shape")
    shape.add_argument("--keep-alive", choices=("on", "off"), default="on",
                       help="HTTP: reuse connections (on, default) or one connection per request")
    shape.add_argument("--torrents", type=_positive(int), default=DEFAULTS.torrents, metavar="N",
                       help=f"torrents, Zipf-popular (default {DEFAULTS.torrents})")
    shape.add_argument("--peers", type=_positive(int), default=DEFAULTS.peers, metavar="M",
                       help=f"peers, one loopback port each (default {DEFAULTS.peers}, at most "
                            f"{MAX_PEERS})")
    shape.add_argument("--seed", type=int, default=DEFAULTS.seed,
                       help="seed of the torrent set and the request sequence (default 1)")
    shape.add_argument("--zipf", type=float, default=DEFAULTS.zipf_exponent, metavar="S",
                       help="Zipf exponent of torrent popularity; 0 is uniform (default 1.0)")
    shape.add_argument("--seeder-share", type=_share, default=DEFAULTS.seeder_share,
                       metavar="F", help="share of peers that start as seeders (default 0.3)")
    shape.add_argument("--numwant", type=int, default=DEFAULTS.numwant,
                       help="peers asked for per announce (default 50)")
    shape.add_argument("--scrape-share", type=_share, default=DEFAULTS.scrape_share, metavar="F",
                       help="share of requests that are scrapes (default 0.1)")
    shape.add_argument("--scrape-hashes", type=_positive(int), default=DEFAULTS.scrape_hashes,
                       metavar="K", help="torrents per scrape (default 3)")
    shape.add_argument("--stopped-share", type=_share, default=DEFAULTS.stopped_share,
                       metavar="F", help="share of a started peer's announces that stop it "
                                         "(default 0.05)")
    shape.add_argument("--completed-share", type=_share, default=DEFAULTS.completed_share,
                       metavar="F", help="share of a leecher's announces that complete "
                                         "(default 0.05)")
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true",
                        help="print one JSON object instead of the table")
    output.add_argument("--print-info-hashes", action="store_true",
                        help="print the torrent set (--torrents, --seed) as hex, one a line, most "
                             "popular first, and exit (e.g. for a tracker's whitelist)")
    output.add_argument("--tracker-pid", type=_positive(int), metavar="PID", action="append",
                        help="also report the CPU time of this process and its children during "
                             "the run, to tell who was the bottleneck (repeatable: a tracker "
                             "and its Redis)")
    output.add_argument("--no-progress", action="store_true",
                        help="no progress bar (it is drawn on stderr only when a terminal)")
    parser.set_defaults(handler=run)
    return parser


def _shape(args: argparse.Namespace) -> WorkloadShape:
    shape = WorkloadShape(
        torrents=args.torrents, peers=args.peers, seed=args.seed, zipf_exponent=args.zipf,
        seeder_share=args.seeder_share, numwant=args.numwant, scrape_share=args.scrape_share,
        scrape_hashes=args.scrape_hashes, stopped_share=args.stopped_share,
        completed_share=args.completed_share)
    shape.check()
    return shape


@contextlib.contextmanager
def _responder(protocol: str, numwant: int) -> Iterator[str]:
    """Start the trivial responder (our own child, stopped by its PID) and yield its URL.

    It runs on the cores this process is not pinned to, when there are any (`taskset -c 1
    meridian loadtest --self-test` puts the responder on the others), so that the two do not
    share a core.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "services.loadtest.responder", "--port", "0",
         "--peers", str(max(numwant, 0)), "--max-seconds", str(MAX_DURATION + 60)],
        stdout=subprocess.PIPE)
    others = set(range(os.cpu_count() or 1)) - os.sched_getaffinity(0)
    if others:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(process.pid, others)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.isdigit():
            raise RunError("the self-test responder did not start")
        port = int(line)
        yield (f"http://127.0.0.1:{port}/announce" if protocol == "http"
               else f"udp://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def run(args: argparse.Namespace) -> int:
    def refuse(message: str) -> int:
        print(f"meridian loadtest: {message}", file=sys.stderr)
        return 2

    try:
        shape = _shape(args)
    except ValueError as exc:
        return refuse(str(exc))
    if args.print_info_hashes:
        sys.stdout.write("".join(h.hex() + "\n" for h in info_hashes(shape.torrents, shape.seed)))
        return 0
    if args.duration > MAX_DURATION:
        return refuse(f"--duration {args.duration:g} is over the bound of {MAX_DURATION:g} s")
    if args.self_test == bool(args.url):
        return refuse("give --url URL (a tracker on loopback) or --self-test, one of the two")
    try:
        with contextlib.ExitStack() as stack:
            url = args.url or stack.enter_context(_responder(args.protocol or "udp",
                                                             shape.numwant))
            try:
                target = parse_target(url, args.protocol if args.url else None)
            except TargetError as exc:
                return refuse(str(exc))
            config = RunConfig(target=target, shape=shape, duration=args.duration,
                               requests=args.requests, rate=args.rate, window=args.window,
                               keep_alive=args.keep_alive == "on", timeout=args.timeout,
                               workers=args.workers,
                               tracker_pids=tuple(args.tracker_pid or ()))
            if args.workers > shape.peers:
                return refuse(f"--workers {args.workers} needs at least as many --peers")
            summary = run_load(config, show_progress=not args.no_progress)
    except RunError as exc:
        print(f"meridian loadtest: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("meridian loadtest: interrupted", file=sys.stderr)
        return 130
    if args.self_test:
        summary["self_test"] = True
    print(render_json(summary) if args.json else render_table(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m services.loadtest ...`: the subcommand on its own, before `meridian` wires it."""
    parser = argparse.ArgumentParser(prog="meridian")
    commands = parser.add_subparsers(dest="command")
    loadtest = add_parser(commands)
    args = loadtest.parse_args(argv)
    return run(args)


__all__ = ["add_parser", "main", "run"]
