"""`meridian loadtest` against a real tracker on loopback: HTTP (keep-alive on and off) and UDP.

Each run is short (about 2 s) and must end with valid answers only: every answer is decoded and
validated by the core's codecs inside the generator, so errors == 0 also says the tracker and
the generator agree about the wire.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.servers import ROOT, RunningTracker

LOADTEST = [sys.executable, "-m", "services.loadtest"]


def loadtest(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LOADTEST, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def run_json(*args: str) -> dict:
    done = loadtest(*args, "--duration", "2", "--json", "--torrents", "50", "--peers", "500")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, "--json prints one JSON object and nothing else on stdout"
    return json.loads(lines[0])


def check_summary(summary: dict, protocol: str) -> None:
    for key in ("requests_per_second", "p50_ms", "p99_ms", "p999_ms", "errors", "requests"):
        assert key in summary, key
    assert summary["protocol"] == protocol
    assert summary["errors"] == 0, summary["errors_by_kind"]
    assert summary["requests"] > 0
    assert summary["requests_per_second"] > 0
    assert 0 < summary["p50_ms"] <= summary["p99_ms"] <= summary["p999_ms"]
    assert summary["by_action"]["announce"]["count"] > 0
    assert summary["by_action"]["scrape"]["count"] > 0
    assert summary["events"]["started"] > 0 and summary["events"]["update"] > 0


@pytest.mark.parametrize("keep_alive", ["on", "off"])
def test_http_load_against_a_real_tracker(tracker: RunningTracker, keep_alive: str) -> None:
    summary = run_json("--url", tracker.announce_url(), "--keep-alive", keep_alive,
                       "--window", "8")
    check_summary(summary, "http")
    assert summary["keep_alive"] is (keep_alive == "on")
    if keep_alive == "on":
        assert summary["tcp_connections"] <= 8 + summary["http_retried"]
    else:
        assert summary["tcp_connections"] >= summary["requests"]


def test_udp_load_against_a_real_tracker(tracker: RunningTracker) -> None:
    summary = run_json("--url", tracker.udp_url(), "--window", "16",
                       "--tracker-pid", str(tracker.process.pid))
    check_summary(summary, "udp")
    assert summary["udp_connects"] >= 1
    assert summary["tracker_cpu_s"] is not None and summary["tracker_cpu_s"] > 0


def test_udp_over_ipv6_loopback(tracker: RunningTracker) -> None:
    summary = run_json("--url", tracker.udp_url("::1"), "--window", "4")
    check_summary(summary, "udp")


def test_fixed_rate_and_count_bound(tracker: RunningTracker) -> None:
    done = loadtest("--url", tracker.udp_url(), "--rate", "200", "--requests", "150",
                    "--duration", "5", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["requests"] == 150 and summary["errors"] == 0
    # 150 requests at 200/s take about 0.75 s: the rate, not the window, paced them
    assert 0.6 < summary["elapsed_s"] < 2.5


def test_table_output_is_the_default(tracker: RunningTracker) -> None:
    done = loadtest("--url", tracker.announce_url(), "--duration", "1", "--torrents", "10",
                    "--peers", "50")
    assert done.returncode == 0, done.stderr
    assert "p99.9 ms" in done.stdout and "errors: 0" in done.stdout
    assert "[" not in done.stderr, "no progress bar when stderr is not a terminal"


def test_print_info_hashes_is_reproducible() -> None:
    first = loadtest("--torrents", "20", "--seed", "7", "--print-info-hashes")
    again = loadtest("--torrents", "20", "--seed", "7", "--print-info-hashes")
    other = loadtest("--torrents", "20", "--seed", "8", "--print-info-hashes")
    assert first.returncode == again.returncode == other.returncode == 0
    hashes = first.stdout.split()
    assert len(hashes) == 20 and len(set(hashes)) == 20
    assert all(len(h) == 40 and int(h, 16) >= 0 for h in hashes)
    assert first.stdout == again.stdout
    assert set(other.stdout.split()).isdisjoint(hashes)


@pytest.mark.parametrize("url", [
    "http://192.0.2.10:6969/announce",
    "udp://198.51.100.7:6969",
    "udp://[2001:db8::1]:6969/announce",
])
def test_non_loopback_target_is_refused(url: str) -> None:
    done = loadtest("--url", url, "--duration", "1")
    assert done.returncode == 2
    assert "not a loopback address" in done.stderr
    assert done.stdout == ""


def test_protocol_flag_must_agree_with_the_url() -> None:
    done = loadtest("--url", "udp://127.0.0.1:6969", "--protocol", "http", "--duration", "1")
    assert done.returncode == 2 and "contradicts" in done.stderr


def test_nothing_listening_is_a_clear_failure() -> None:
    from tests.servers import free_port

    port = free_port()
    done = loadtest("--url", f"http://127.0.0.1:{port}/announce", "--duration", "1")
    assert done.returncode == 1 and "cannot connect" in done.stderr
    done = loadtest("--url", f"udp://127.0.0.1:{port}", "--duration", "1", "--timeout", "0.3")
    assert done.returncode == 1 and "no answer to a UDP connect" in done.stderr


def test_self_test_measures_the_generator_against_the_responder() -> None:
    done = loadtest("--self-test", "--protocol", "udp", "--duration", "1", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["self_test"] is True and summary["errors"] == 0
    assert summary["peers_per_announce"] == 50.0  # full answers: a conservative ceiling


def test_workers_split_the_load(tracker: RunningTracker) -> None:
    summary = run_json("--url", tracker.udp_url(), "--workers", "2", "--window", "8")
    check_summary(summary, "udp")
    assert summary["workers"] == 2
