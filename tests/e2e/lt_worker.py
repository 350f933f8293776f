"""One libtorrent session in its own process, seeding or downloading one torrent.

Run by the e2e tests as `python lt_worker.py TORRENT SAVE_DIR --listen ADDR:PORT`. A session
whose SAVE_DIR already holds the data seeds it; otherwise it downloads it and then seeds. It
prints one JSON object per line on stdout (the events the test waits for) and runs until SIGTERM,
when it pauses the torrent, which sends the `stopped` announce, waits up to 5 s for the
tracker's answer to it, and exits 0.

Each session is its own process because sessions in one process share libtorrent's UDP tracker
connection cache. The session is locked down so that the tracker is the only source of peers:
no DHT, LSD, PEX (no default plugins at all), UPnP or NAT-PMP, and it listens on one loopback
address only.

Events:
  {"event": "listening", "address": A, "port": P}   the BitTorrent TCP listen socket is up
  {"event": "tracker_reply", "url": U, "num_peers": N}
  {"event": "tracker_error", "url": U, "message": M}
  {"event": "connecting", "ip": I, "port": P}       a connection with a peer is being made
  {"event": "peer", "ip": I, "port": P, "source": S, "client": C}
        a peer past the handshake; S is libtorrent's peer_source_flags (1 tracker, 2 DHT,
        4 PEX, 8 LSD, 16 resume data, 32 incoming), C its client name
  {"event": "seeding", "total_done": B}             all pieces are here and verified
  {"event": "alert", "what": W, "message": M}      any other alert, for diagnostics
  {"event": "stopping"}                             SIGTERM received: pausing, announcing stopped
  {"event": "stopped"}                              the stopped announce is answered (or 5 s
                                                    passed); the session is closing
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from types import FrameType
from typing import Any

import libtorrent as lt

_stop = False
# Alerts asked for only to wake the loop while data moves; not worth an event each.
_QUIET = frozenset({"piece_finished", "block_uploaded", "block_finished", "block_downloading",
                    "cache_flushed"})


def _on_term(signum: int, frame: FrameType | None) -> None:
    global _stop
    _stop = True


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def session_settings(listen: str) -> dict[str, Any]:
    """Settings for a session that finds its peers only through the tracker, on loopback."""
    return {
        "listen_interfaces": listen,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        # Every peer here is on 127.0.0.1 (or ::1): they must not be taken for one peer.
        "allow_multiple_connections_per_ip": True,
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "tracker_completion_timeout": 10,
        "tracker_receive_timeout": 5,
        "stop_tracker_timeout": 3,
        # piece_progress and upload alerts wake the loop while data moves, so the peers are
        # listed (with their source) while they are still connected.
        "alert_mask": (lt.alert_category.error | lt.alert_category.status
                       | lt.alert_category.tracker | lt.alert_category.connect
                       | lt.alert_category.storage | lt.alert_category.piece_progress
                       | lt.alert_category.upload),
    }


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def run(torrent: str, save_dir: str, listen: str) -> int:
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    # flags=0: no default plugins, so no ut_pex (peer exchange) and no ut_metadata. (The binding
    # takes a plain dict of settings; its type stubs only name settings_pack.)
    session = lt.session(session_settings(listen), flags=0)  # type: ignore[call-overload]
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = save_dir
    params.flags = (lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd
                    | lt.torrent_flags.disable_pex)
    handle = session.add_torrent(params)
    reported: set[tuple[str, int]] = set()
    seeding = False

    def report_peers() -> None:
        for peer in handle.get_peer_info():
            endpoint = (str(peer.ip[0]), int(peer.ip[1]))
            in_progress = peer.flags & (lt.peer_info.connecting | lt.peer_info.handshake)
            if endpoint not in reported and not in_progress:
                reported.add(endpoint)
                emit("peer", ip=endpoint[0], port=endpoint[1], source=int(peer.source),
                     client=_text(peer.client))

    def handle_alerts() -> list[str]:
        """Emit events for the alerts that arrived; return the names of the events emitted."""
        names = []
        for alert in session.pop_alerts():
            if isinstance(alert, lt.listen_succeeded_alert):
                if alert.socket_type == lt.socket_type_t.tcp:
                    emit("listening", address=str(alert.address), port=alert.port)
            elif isinstance(alert, lt.listen_failed_alert):
                emit("listen_failed", message=alert.message())
            elif isinstance(alert, lt.tracker_reply_alert):
                names.append("tracker_reply")
                emit("tracker_reply", url=alert.tracker_url(), num_peers=alert.num_peers)
            elif isinstance(alert, (lt.tracker_error_alert, lt.tracker_warning_alert)):
                names.append("tracker_error")
                emit("tracker_error", url=alert.tracker_url(), message=alert.message())
            elif isinstance(alert, lt.peer_connect_alert):
                emit("connecting", ip=str(alert.endpoint[0]), port=int(alert.endpoint[1]))
            elif isinstance(alert, (lt.torrent_error_alert, lt.file_error_alert)):
                emit("torrent_error", message=alert.message())
            elif alert.what() not in _QUIET:
                emit("alert", what=alert.what(), message=alert.message())
        return names

    while not _stop:
        session.wait_for_alert(100)
        handle_alerts()
        report_peers()
        if not seeding and handle.status().is_seeding:
            seeding = True
            emit("seeding", total_done=handle.status().total_done)

    # Pausing the torrent sends the `stopped` announce; wait (boundedly) for its answer, since
    # tearing the session down at once can drop it (it does for UDP trackers).
    emit("stopping")
    handle.pause()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        session.wait_for_alert(100)
        if {"tracker_reply", "tracker_error"} & set(handle_alerts()):
            break
    emit("stopped")
    session.remove_torrent(handle)
    return 0  # the session is destroyed as it goes out of scope


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one libtorrent session, seeding or leeching")
    parser.add_argument("torrent")
    parser.add_argument("save_dir")
    parser.add_argument("--listen", required=True,
                        help="libtorrent listen_interfaces, e.g. 127.0.0.1:0 or [::1]:0")
    args = parser.parse_args(argv)
    return run(args.torrent, args.save_dir, args.listen)


if __name__ == "__main__":
    sys.exit(main())
