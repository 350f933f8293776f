"""The `meridian` command as operators' scripts use it, and `make run` as a newcomer does."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from services import __version__
from services.core.model import AnnounceRequest
from tests.clients import UdpClient
from tests.servers import MERIDIAN, ROOT, free_port, stop_process, wait_for_http


def test_version() -> None:
    out = subprocess.run([*MERIDIAN, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"meridian {__version__}"


def test_config_print_lists_every_setting_with_meaning() -> None:
    from services.settings import Settings

    out = subprocess.run([*MERIDIAN, "config", "print"], capture_output=True, text=True,
                         check=True, env={**os.environ, "MERIDIAN_PORT": "7777"}).stdout
    for name in Settings.model_fields:
        assert re.search(rf"^#? ?{name} =", out, re.M), f"{name} missing from config print"
        assert f"MERIDIAN_{name.upper()}" in out
    assert re.search(r"^port = 7777$", out, re.M)  # the value in force is shown


def test_unknown_setting_is_refused_with_a_message(tmp_path: Path) -> None:
    config = tmp_path / "meridian.toml"
    config.write_text('annouce_interval = 60\n')
    out = subprocess.run([*MERIDIAN, "config", "print", "--config", str(config)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "annouce_interval" in out.stderr
    out = subprocess.run([*MERIDIAN, "config", "print"], capture_output=True, text=True,
                         env={**os.environ, "MERIDIAN_PROT": "1"})
    assert out.returncode == 2 and "MERIDIAN_PROT" in out.stderr


def test_serve_host_port_serves_http_and_udp_on_one_port_and_stops_on_sigint(
        tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "meridian.toml"
    config.write_text('announce_interval = 77\nudp_secret = "a-secret-of-sixteen-bytes"\n')
    process = subprocess.Popen(
        [*MERIDIAN, "serve", "--host", "127.0.0.1", "--port", str(port), "--store", "memory://",
         "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ready", process=process)
        query = b"info_hash=" + b"%01" * 20 + b"&peer_id=" + b"x" * 20 + b"&port=5"
        body = httpx.get(f"http://127.0.0.1:{port}/announce?{query.decode()}").content
        assert b"8:intervali77e" in body
        udp = UdpClient("127.0.0.1", port)
        try:
            assert udp.announce(AnnounceRequest(b"\x01" * 20, b"y" * 20, 6, left=0)).interval == 77
        finally:
            udp.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
        stdout = process.stdout.read().decode() if process.stdout else ""
        assert f"http://127.0.0.1:{port}/announce" in stdout
        assert f"udp://127.0.0.1:{port}/announce" in stdout
    finally:
        stop_process(process)


def test_serve_stops_cleanly_on_sigterm() -> None:
    port = free_port()
    process = subprocess.Popen([*MERIDIAN, "serve", "--host", "127.0.0.1", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", process=process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        stop_process(process)


def test_busy_port_is_a_clear_error() -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        out = subprocess.run([*MERIDIAN, "serve", "--host", "127.0.0.1", "--port", str(port)],
                             capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "cannot listen" in out.stderr


def test_make_run_prints_the_announce_urls() -> None:
    """What the README promises: `make run` starts the embedded tracker and prints its URLs."""
    port = free_port()
    process = subprocess.Popen(["make", "--no-print-directory", "run", f"PORT={port}"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
                               start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline().decode()
            if not line:
                break
            lines.append(line)
            if "Stop with Ctrl-C" in line:
                break
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}/announce" in text, text
        assert f"udp://127.0.0.1:{port}/announce" in text, text
        wait_for_http(f"http://127.0.0.1:{port}/health")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # make and the tracker it started
        process.wait(15)
