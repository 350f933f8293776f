"""Prometheus metrics of a reconciler process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ReconcilerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.merged = Counter("meridian_reconciler_merged", "Events merged into the store",
                              ["source_region"], registry=self.registry)
        self.won = Counter("meridian_reconciler_won",
                           "Merged events that were newer than what the store held",
                           registry=self.registry)
        self.rejected = Counter("meridian_reconciler_rejected",
                                "Events that failed to decode, sent to the dead-letter topic",
                                registry=self.registry)
        self.lag = Gauge("meridian_reconciler_lag", "Events not yet consumed, per partition",
                         ["topic", "partition"], registry=self.registry)
        self.delay = Histogram(
            "meridian_reconciler_delay_seconds", "From an event's time to its merge",
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.store_errors = Counter("meridian_reconciler_store_errors",
                                    "Merges retried because the store failed",
                                    registry=self.registry)
        self.rebuilds = Counter("meridian_reconciler_rebuilds", "Rebuilds of an empty store",
                                registry=self.registry)
        self.rebuild_events = Gauge("meridian_reconciler_rebuild_remaining",
                                    "Events left to replay in a running rebuild",
                                    registry=self.registry)
