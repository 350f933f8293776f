"""Prometheus metrics of one announce process, in a registry of its own (so apps in one test
process never share counters). Names start with `meridian_`; labels are small fixed sets.

`labels(...)` validates its arguments and takes a lock on every call, so the children that
every answer touches (`answered`, `latency_of`) are bound once, on first use, and kept.
"""

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
        self.stale = Counter("meridian_stale_answers",
                             "Announces answered from the stale cache (store failing, breaker "
                             "open, or emergency mode), by protocol", ["protocol"],
                             registry=self.registry)
        self.breaker_state = Gauge("meridian_store_breaker_state",
                                   "Store circuit breaker: 0 closed, 1 half-open, 2 open",
                                   registry=self.registry)
        self.emergency = Gauge("meridian_emergency", "1 while the region is in emergency mode",
                               registry=self.registry)
        self.inflight = Gauge("meridian_inflight_announces", "Announces being answered now",
                              registry=self.registry)
        self._answered: dict[tuple[str, str], Counter] = {}
        self._latency: dict[str, Histogram] = {}

    def answered(self, protocol: str, action: str) -> Counter:
        """The `requests` child counting good answers of this protocol and action."""
        child = self._answered.get((protocol, action))
        if child is None:
            child = self._answered[protocol, action] = self.requests.labels(protocol, action, "ok")
        return child

    def latency_of(self, protocol: str) -> Histogram:
        """The `latency` child of this protocol."""
        child = self._latency.get(protocol)
        if child is None:
            child = self._latency[protocol] = self.latency.labels(protocol)
        return child

    def watch_store(self, counts: Callable[[], tuple[int, int]]) -> None:
        """Export the store's swarm and peer counts, read at scrape time."""
        swarms = Gauge("meridian_swarms", "Torrents held by this process's store",
                       registry=self.registry)
        peers = Gauge("meridian_peers", "Peers held by this process's store",
                      registry=self.registry)
        swarms.set_function(lambda: counts()[0])
        peers.set_function(lambda: counts()[1])
