"""The reconciler: merges other regions' announce events from Kafka into this region's store.

`consumer.Reconciler` runs the consumer group over the other regions' topics: decode, merge
(last writer wins per peer, `services.core.merge`), then commit, so an offset is committed only
after its events are in the store. Undecodable events go to the dead-letter topic with their
reason. `rebuild.rebuild` replays every region's topic, this one's included, from "now minus
the peer TTL" into an empty store. `metrics` holds the Prometheus metrics.
"""
