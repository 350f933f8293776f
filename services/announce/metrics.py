"""Prometheus metrics of one announce process, in a registry of its own (so apps in one test
process never share counters). Names start with `meridian_`; labels are small fixed sets."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class AnnounceMetrics:
    def __init__(self, region: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "meridian_requests", "Requests answered, by protocol, action and result",
            ["protocol", "action", "result"], registry=self.registry)
        self.bad_requests = Counter(
            "meridian_bad_requests", "Requests refused as malformed or not allowed, by reason",
            ["protocol", "reason"], registry=self.registry)
        self.errors = Counter(
            "meridian_internal_errors", "Requests that failed by a fault of ours (see the log)",
            ["protocol"], registry=self.registry)
        self.shed = Counter(
            "meridian_shed", "Announces refused with BEP 31 retry in because of load",
            ["protocol"], registry=self.registry)
        self.latency = Histogram(
            "meridian_announce_seconds", "Time to answer an announce, by protocol",
            ["protocol"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
        self.info = Gauge("meridian_info", "Constant 1, labelled with this node's region",
                          ["region"], registry=self.registry)
        self.info.labels(region=region).set(1)
        self.inflight = Gauge("meridian_inflight_announces", "Announces being answered now",
                              registry=self.registry)

    def watch_store(self, counts: Callable[[], tuple[int, int]]) -> None:
        """Export the store's swarm and peer counts, read at scrape time."""
        swarms = Gauge("meridian_swarms", "Torrents held by this process's store",
                       registry=self.registry)
        peers = Gauge("meridian_peers", "Peers held by this process's store",
                      registry=self.registry)
        swarms.set_function(lambda: counts()[0])
        peers.set_function(lambda: counts()[1])
