"""`meridian sandbox up|down`: a multi-region Meridian on one machine, on loopback.

`up` starts one Kafka broker, and per region a redis-server, an announce node and a
reconciler. It waits until every node answers, records every PID in a state file and prints
each region's URLs (or one JSON object with `--json`). The processes run detached, so the
command returns. `down` stops exactly the PIDs in the state file, and the broker by its PID.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
from pathlib import Path
from typing import Any

from services.stream.topics import ensure_topics

from .local import (
    ROOT,
    LocalServerError,
    alive,
    free_port,
    start_kafka,
    start_meridian,
    start_redis,
    stop_kafka,
    stop_pid,
    wait_http,
)

SANDBOX = ROOT / ".cache" / "sandbox"


def _state_file(base: Path) -> Path:
    return base / "state.json"


def _running(state: dict[str, Any]) -> bool:
    pids = [p for r in state.get("regions", {}).values() for p in r["pids"].values()]
    return any(alive(p) for p in pids + [state.get("kafka_pid", 0)] if p)


def up(regions: list[str], extra_env: dict[str, str] | None = None, partitions: int = 3,
       base: Path = SANDBOX) -> dict[str, Any]:
    """Start the sandbox under `base`; return its state (`public` gives what --json prints)."""
    if _state_file(base).exists():
        old = json.loads(_state_file(base).read_text())
        if _running(old):
            raise LocalServerError("a sandbox is already up; run `meridian sandbox down` first")
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    state: dict[str, Any] = {"regions": {}, "kafka": None, "kafka_pid": None, "kafka_run": None,
                             "base": str(base), "env": {}}
    try:
        bootstrap, run, kafka_pid = start_kafka(detach=True)
        state.update(kafka=bootstrap, kafka_pid=kafka_pid, kafka_run=str(run))
        _save(state)
        from services.settings import Settings

        defaults = Settings.load(kafka_bootstrap=bootstrap)
        asyncio.run(ensure_topics(bootstrap, [defaults.topic(r) for r in regions]
                                  + [defaults.dead_letter_topic], partitions=partitions))
        env = {"MERIDIAN_UDP_SECRET": secrets.token_hex(16), "MERIDIAN_LOG_LEVEL": "warning",
               "MERIDIAN_SPOOL_DIR": str(base / "spool"), **(extra_env or {})}
        state["env"] = env
        for region in regions:
            folder = base / region
            redis_port, port, metrics_port = free_port(), free_port(), free_port()
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            pids = {"redis": start_redis(redis_port, folder, detach=True)}
            state["regions"][region] = {
                "http": f"http://127.0.0.1:{port}/announce",
                "udp": f"udp://127.0.0.1:{port}/announce",
                "redis": redis_url, "port": port, "pids": pids,
                "reconciler_metrics": f"http://127.0.0.1:{metrics_port}/metrics",
                "metrics_port": metrics_port,
            }
            _save(state)
            pids["reconciler"] = start_role(state, region, "reconciler")
            pids["announce"] = start_role(state, region, "announce")
            _save(state)
        for info in state["regions"].values():
            wait_http(f"http://127.0.0.1:{info['port']}/ready", timeout=60,
                      pid=info["pids"]["announce"])
    except BaseException:
        down(state)
        raise
    return state


def start_role(state: dict[str, Any], region: str, role: str) -> int:
    """Start (or restart) a region's announce node, reconciler or Redis; returns its PID.

    A restarted Redis comes back empty on the same port, as after a crash without persistence.
    """
    info = state["regions"][region]
    folder = Path(state["base"]) / region
    if role == "redis":
        port = int(info["redis"].rsplit(":", 1)[1].split("/", 1)[0])
        pid = start_redis(port, folder, detach=True)
        info["pids"]["redis"] = pid
        _save(state)
        return pid
    common = ["--region", region, "--store", info["redis"], "--kafka", state["kafka"]]
    env = dict(state["env"])
    if role == "reconciler":
        args = ["reconcile", *common]
        env["MERIDIAN_RECONCILER_METRICS_PORT"] = str(info["metrics_port"])
    else:
        args = ["serve", "--host", "127.0.0.1", "--host", "::1", "--port", str(info["port"]),
                *common]
    pid = start_meridian(args, folder / f"{role}.log", env, detach=True)
    info["pids"][role] = pid
    _save(state)
    return pid


def _save(state: dict[str, Any]) -> None:
    path = _state_file(Path(state["base"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2))


def load(base: Path = SANDBOX) -> dict[str, Any] | None:
    path = _state_file(base)
    return json.loads(path.read_text()) if path.exists() else None


def down(state: dict[str, Any] | None = None, base: Path = SANDBOX) -> list[int]:
    """Stop what `up` started (by PID); return the PIDs stopped."""
    if state is None:
        state = load(base)
        if state is None:
            return []
    stopped = []
    for info in state.get("regions", {}).values():
        for role in ("announce", "reconciler", "redis"):
            pid = info["pids"].get(role)
            if pid and alive(pid):
                stop_pid(pid)
                stopped.append(pid)
    if state.get("kafka_run"):
        if state.get("kafka_pid") and alive(state["kafka_pid"]):
            stopped.append(state["kafka_pid"])
        stop_kafka(Path(state["kafka_run"]))
    _state_file(Path(state.get("base", base))).unlink(missing_ok=True)
    return stopped


def describe(state: dict[str, Any]) -> str:
    lines = [f"Meridian sandbox: {len(state['regions'])} regions, Kafka at {state['kafka']}"]
    for region, info in state["regions"].items():
        lines.append(f"  {region:<6} HTTP {info['http']}")
        lines.append(f"  {'':<6} UDP  {info['udp']}")
        lines.append(f"  {'':<6} Redis {info['redis']}  reconciler metrics "
                     f"{info['reconciler_metrics']}")
    lines.append(f"Logs: {state['base']}/<region>/")
    lines.append("Stop it with: meridian sandbox down")
    return "\n".join(lines)


def public(state: dict[str, Any]) -> dict[str, Any]:
    """The JSON `sandbox up --json` prints."""
    return {
        "regions": {r: {"http": i["http"], "udp": i["udp"], "redis": i["redis"],
                        "pids": dict(i["pids"])} for r, i in state["regions"].items()},
        "kafka": state["kafka"],
    }
