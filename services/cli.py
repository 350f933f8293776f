"""The `meridian` command: serve, config print, --version."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services import __version__
from services.settings import Settings, SettingsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meridian",
        description="Meridian: a multi-region, active-active BitTorrent tracker.")
    parser.add_argument("--version", action="version", version=f"meridian {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run an announce node (HTTP and UDP on one port)",
        description="Run an announce node: HTTP /announce, /scrape, /health, /ready, /metrics "
                    "and BEP 15 UDP, on one port number. Prints its announce URLs.")
    serve.add_argument("--host", action="append", metavar="ADDR",
                       help="address to listen on (repeatable; default 0.0.0.0 and ::)")
    serve.add_argument("--port", type=int, help="port for HTTP and UDP (default 6969)")
    serve.add_argument("--store", metavar="URL", help="peer store URL (default memory://)")
    serve.add_argument("--workers", type=int, metavar="N",
                       help="processes on the same ports (default: one per core with a Redis "
                            "store, 1 with memory://)")
    serve.add_argument("--region", help="this node's region name")
    serve.add_argument("--kafka", metavar="SERVERS",
                       help="Kafka bootstrap servers for announce events (default: none)")
    serve.add_argument("--config", metavar="FILE", help="TOML settings file")

    reconcile = commands.add_parser(
        "reconcile", help="merge other regions' announce events into this region's store",
        description="Run the reconciler of one region: consume the other regions' announce "
                    "topics and merge them into the region's store (last writer wins per "
                    "peer). Rebuilds an empty store from Kafka first.")
    reconcile.add_argument("--region", help="this region's name")
    reconcile.add_argument("--store", metavar="URL", help="the region's store URL")
    reconcile.add_argument("--kafka", metavar="SERVERS", help="Kafka bootstrap servers")
    reconcile.add_argument("--rebuild", action="store_true",
                           help="replay the last peer-TTL of every region's events first")
    reconcile.add_argument("--rebuild-only", action="store_true",
                           help="rebuild the store from Kafka, then exit (runbooks)")
    reconcile.add_argument("--config", metavar="FILE", help="TOML settings file")

    sandbox = commands.add_parser(
        "sandbox", help="a local multi-region Meridian on loopback",
        description="Start or stop a multi-region Meridian on this machine: one Kafka, and per "
                    "region a Redis, an announce node and a reconciler.")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", metavar="ACTION")
    sandbox_up = sandbox_commands.add_parser("up", help="start it and print the URLs")
    sandbox_up.add_argument("--regions", default="eu,us,ap",
                            help="comma-separated region names (default eu,us,ap)")
    sandbox_up.add_argument("--json", action="store_true",
                            help="print one JSON object instead of text")
    sandbox_up.add_argument("--dir", type=Path, default=None,
                            help="folder for its state, data and logs (default .cache/sandbox)")
    sandbox_down = sandbox_commands.add_parser("down", help="stop everything `sandbox up` started")
    sandbox_down.add_argument("--dir", type=Path, default=None,
                              help="the folder given to `sandbox up --dir`")

    from services.loadtest.cli import add_parser as add_loadtest

    add_loadtest(commands)

    ops = commands.add_parser("ops", help="operate a deployment (runbook steps)")
    ops_commands = ops.add_subparsers(dest="ops_command", metavar="ACTION")
    ops_ready = ops_commands.add_parser(
        "ready", help="check nodes' /ready; exit 1 if any is not ready",
        description="GET /ready on each node (base or announce URL). Exit 0 only if all are "
                    "ready; a rebuilding region is not ready.")
    ops_ready.add_argument("urls", nargs="+", metavar="URL")
    ops_ready.add_argument("--wait", type=float, default=0,
                           help="keep checking up to this many seconds until all are ready")
    ops_compare = ops_commands.add_parser(
        "compare", help="compare the swarms of regions' stores; exit 1 if they differ",
        description="Count torrents and live peers in each store and list torrents whose "
                    "seeder/leecher counts differ. Exit 0 only if all stores agree.")
    ops_compare.add_argument("--store", action="append", required=True, metavar="URL",
                             help="a region's store URL (give two or more)")
    ops_compare.add_argument("--wait", type=float, default=0,
                             help="keep comparing up to this many seconds until they agree")

    ops_emergency = ops_commands.add_parser(
        "emergency", help="switch a region's emergency mode on or off",
        description="Emergency mode makes every node of the region lengthen its interval, "
                    "prefer cached answers and tighten limits. It is written to the region's "
                    "store and to the Kafka control topic, so nodes hear it while either is "
                    "down; the command succeeds if at least one channel took it.")
    ops_emergency.add_argument("switch", choices=["on", "off"])
    ops_emergency.add_argument("--region", required=True)
    ops_emergency.add_argument("--store", metavar="URL", help="the region's store URL")
    ops_emergency.add_argument("--kafka", metavar="SERVERS", help="Kafka bootstrap servers")

    config = commands.add_parser("config", help="inspect settings")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION")
    show = config_commands.add_parser(
        "print", help="print every setting with its value, default and meaning (as TOML)")
    show.add_argument("--config", metavar="FILE", help="TOML settings file to apply first")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            settings = Settings.load(args.config, listen=args.host, port=args.port,
                                     store=args.store, region=args.region,
                                     kafka_bootstrap=args.kafka, workers=args.workers)
            from services.announce.server import run

            return run(settings)
        if args.command == "reconcile":
            settings = Settings.load(args.config, region=args.region, store=args.store,
                                     kafka_bootstrap=args.kafka)
            from services.reconciler.run import run as run_reconciler

            return run_reconciler(settings, force_rebuild=args.rebuild,
                                  rebuild_only=args.rebuild_only)
        if args.command == "loadtest":
            from services.loadtest.cli import run as run_loadtest

            return run_loadtest(args)
        if args.command == "sandbox" and args.sandbox_command in ("up", "down"):
            return _sandbox(args)
        if args.command == "ops" and args.ops_command == "emergency":
            return _emergency(args)
        if args.command == "ops" and args.ops_command in ("ready", "compare"):
            return _ops(args)
        if args.command == "config" and args.config_command == "print":
            sys.stdout.write(Settings.load(args.config).describe())
            return 0
    except SettingsError as exc:
        print(f"meridian: bad settings: {exc}", file=sys.stderr)
        return 2
    parser.print_help()
    return 2


def _emergency(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from services.ops.emergency import EmergencyError, set_emergency

    settings = Settings.load(region=args.region, store=args.store, kafka_bootstrap=args.kafka)
    try:
        report = asyncio.run(set_emergency(settings, args.region, args.switch == "on"))
    except EmergencyError as exc:
        print(f"meridian: {exc}", file=sys.stderr)
        print(json.dumps(exc.report, default=str))
        return 1
    print(json.dumps(report, default=str))
    return 0


def _ops(args: argparse.Namespace) -> int:
    import asyncio
    import time

    from services.ops import status

    deadline = time.monotonic() + args.wait
    while True:
        if args.ops_command == "ready":
            nodes = status.ready(args.urls)
            ok = all(n.ready for n in nodes)
            text = "\n".join(f"{'ready    ' if n.ready else 'NOT READY'} {n.url}  {n.detail}"
                             for n in nodes)
        else:
            result = asyncio.run(status.compare(args.store))
            ok = result.equal
            text = result.to_json()
        if ok or time.monotonic() >= deadline:
            print(text)
            return 0 if ok else 1
        time.sleep(0.5)


def _sandbox(args: argparse.Namespace) -> int:
    import json

    from services.ops import sandbox
    from services.ops.local import LocalServerError

    base = args.dir or sandbox.SANDBOX
    if args.sandbox_command == "down":
        stopped = sandbox.down(base=base)
        print(f"sandbox down: stopped {len(stopped)} processes")
        return 0
    regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    if len(set(regions)) != len(regions) or not regions:
        print("meridian: --regions needs distinct names, e.g. eu,us,ap", file=sys.stderr)
        return 2
    try:
        state = sandbox.up(regions, base=base)
    except LocalServerError as exc:
        print(f"meridian: sandbox did not start: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(sandbox.public(state)) if args.json else sandbox.describe(state))
    return 0


if __name__ == "__main__":
    sys.exit(main())
