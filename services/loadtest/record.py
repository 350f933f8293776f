"""Latencies and errors of a run, merged across workers, summarised as a table or JSON.

Every valid answer's latency is kept (microseconds, 4 bytes each), so p99.9 is exact rather
than read off a histogram; a 10-second run at 50,000 answers per second holds 2 MB.
Errors are counted by kind, with the first message of each kind kept as a sample.
"""

from __future__ import annotations

import json
import math
from array import array
from dataclasses import dataclass, field
from typing import Any

ACTIONS = ("announce", "scrape")


@dataclass
class Recorder:
    latencies: dict[str, array[int]] = field(
        default_factory=lambda: {a: array("I") for a in ACTIONS})
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: dict[str, str] = field(default_factory=dict)
    connects: int = 0  # UDP connect round trips (not counted as requests)
    connections: int = 0  # TCP connections opened
    retried: int = 0  # HTTP requests re-sent because the server had closed a reused connection
    ok: int = 0
    peers: int = 0  # peers received in valid announce answers (answers' weight differs by tracker)
    elapsed: float = 0.0
    cpu: float = 0.0  # CPU seconds the generator used while sending (all workers)
    tracker_cpu: float | None = None  # CPU seconds of --tracker-pid meanwhile (worker 0 reads)
    machine_cpu: float | None = None  # busy CPU seconds of the whole machine meanwhile (worker 0)
    behind: int = 0
    events: dict[str, int] = field(default_factory=dict)

    def answered(self, action: str, seconds: float, peers: int = 0) -> None:
        self.ok += 1
        self.peers += peers
        self.latencies[action].append(min(int(seconds * 1e6), 0xFFFFFFFF))

    def error(self, kind: str, detail: str = "") -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if kind not in self.error_samples:
            self.error_samples[kind] = detail[:300]

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def export(self) -> dict[str, Any]:
        """A picklable form, for worker processes to send back."""
        return {**self.__dict__, "latencies": {a: v.tobytes() for a, v in self.latencies.items()}}

    @classmethod
    def merge(cls, exported: list[dict[str, Any]]) -> Recorder:
        total = cls()
        for part in exported:
            for action, raw in part["latencies"].items():
                total.latencies[action].frombytes(raw)
            for kind, count in part["errors"].items():
                total.errors[kind] = total.errors.get(kind, 0) + count
            for kind, sample in part["error_samples"].items():
                total.error_samples.setdefault(kind, sample)
            for name, count in part["events"].items():
                total.events[name] = total.events.get(name, 0) + count
            for name in ("connects", "connections", "retried", "ok", "peers", "behind", "cpu"):
                setattr(total, name, getattr(total, name) + part[name])
            total.elapsed = max(total.elapsed, part["elapsed"])
            for name in ("tracker_cpu", "machine_cpu"):
                if part[name] is not None:
                    setattr(total, name, part[name])
        return total


def percentile(ordered: list[int], q: float) -> float:
    """Nearest-rank percentile of sorted microseconds, in milliseconds."""
    if not ordered:
        return 0.0
    rank = max(math.ceil(q * len(ordered)) - 1, 0)
    return ordered[rank] / 1000.0


@dataclass(frozen=True)
class LatencySummary:
    count: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float

    @classmethod
    def of(cls, micros: list[int]) -> LatencySummary:
        ordered = sorted(micros)
        mean = sum(ordered) / len(ordered) / 1000.0 if ordered else 0.0
        return cls(len(ordered), percentile(ordered, 0.50), percentile(ordered, 0.99),
                   percentile(ordered, 0.999), round(mean, 3),
                   ordered[-1] / 1000.0 if ordered else 0.0)


def summarise(recorder: Recorder, settings: dict[str, Any]) -> dict[str, Any]:
    """The JSON object `--json` prints: totals first, then per action, then the settings."""
    every = [v for a in ACTIONS for v in recorder.latencies[a]]
    overall = LatencySummary.of(every)
    elapsed = recorder.elapsed or 1e-9
    announces = len(recorder.latencies["announce"])
    return {
        "requests": recorder.ok + recorder.error_count,
        "ok": recorder.ok,
        "errors": recorder.error_count,
        "requests_per_second": round(recorder.ok / elapsed, 1),
        "p50_ms": overall.p50_ms,
        "p99_ms": overall.p99_ms,
        "p999_ms": overall.p999_ms,
        "mean_ms": overall.mean_ms,
        "max_ms": overall.max_ms,
        "elapsed_s": round(recorder.elapsed, 3),
        "loadgen_cpu_s": round(recorder.cpu, 3),
        "tracker_cpu_s": round(recorder.tracker_cpu, 3) if recorder.tracker_cpu is not None
        else None,
        "machine_cpu_s": round(recorder.machine_cpu, 3) if recorder.machine_cpu is not None
        else None,
        "by_action": {a: LatencySummary.of(list(recorder.latencies[a])).__dict__
                      for a in ACTIONS},
        "errors_by_kind": dict(sorted(recorder.errors.items())),
        "error_samples": dict(sorted(recorder.error_samples.items())),
        "peers_per_announce": round(recorder.peers / announces, 2) if announces else 0.0,
        "events": recorder.events,
        "udp_connects": recorder.connects,
        "tcp_connections": recorder.connections,
        "http_retried": recorder.retried,
        "behind": recorder.behind,
        **settings,
    }


def render_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, sort_keys=False)


def render_table(summary: dict[str, Any]) -> str:
    """A human-readable report: one line per action and a total."""
    lines = [
        f"meridian loadtest  {summary['url']}  ({summary['protocol']}"
        + (f", keep-alive {'on' if summary['keep_alive'] else 'off'}"
           if summary["protocol"] == "http" else "")
        + f", window {summary['window']}"
        + (f", rate {summary['rate']}/s" if summary["rate"] else ", closed loop")
        + f", {summary['workers']} worker{'s' if summary['workers'] != 1 else ''})",
        f"{summary['torrents']} torrents (Zipf {summary['zipf_exponent']}), "
        f"{summary['peers']} peers, seed {summary['seed']}, numwant {summary['numwant']}, "
        f"{summary['elapsed_s']:.2f} s",
        "",
        f"{'':<10}{'answers':>10}{'req/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}"
        f"{'max ms':>9}",
    ]
    elapsed = summary["elapsed_s"] or 1e-9
    rows = [(a, summary["by_action"][a]) for a in ACTIONS if summary["by_action"][a]["count"]]
    rows.append(("total", {"count": summary["ok"], "p50_ms": summary["p50_ms"],
                           "p99_ms": summary["p99_ms"], "p999_ms": summary["p999_ms"],
                           "max_ms": summary["max_ms"]}))
    for name, s in rows:
        lines.append(f"{name:<10}{s['count']:>10,}{s['count'] / elapsed:>11,.0f}"
                     f"{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}{s['p999_ms']:>10.2f}"
                     f"{s['max_ms']:>9.2f}")
    lines.append("")
    events = ", ".join(f"{k} {v:,}" for k, v in summary["events"].items() if v)
    lines.append(f"sent: {events}")
    lines.append(f"peers per announce answer: {summary['peers_per_announce']:.1f} "
                 f"(numwant {summary['numwant']})")
    extras = []
    if summary["udp_connects"]:
        extras.append(f"{summary['udp_connects']} UDP connects")
    if summary["protocol"] == "http":
        extras.append(f"{summary['tcp_connections']:,} TCP connections")
    if summary["http_retried"]:
        extras.append(f"{summary['http_retried']:,} re-sent after the server closed a kept-alive "
                      "connection")
    cpu = f"generator CPU {100 * summary['loadgen_cpu_s'] / elapsed:.0f}%"
    if summary["tracker_cpu_s"] is not None:
        cpu += f", tracker CPU {100 * summary['tracker_cpu_s'] / elapsed:.0f}%"
    extras.append(cpu + " (100% = one core busy)")
    if summary["behind"]:
        extras.append(f"{summary['behind']:,} requests fell due while the window was full")
    if extras:
        lines.append("; ".join(extras))
    if summary["errors"]:
        lines.append(f"ERRORS: {summary['errors']:,}")
        for kind, count in summary["errors_by_kind"].items():
            lines.append(f"  {kind:<22}{count:>9,}  e.g. {summary['error_samples'].get(kind, '')}")
    else:
        lines.append("errors: 0 (every answer decoded and validated with services.core)")
    return "\n".join(lines)
