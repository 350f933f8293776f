"""Announce events on their way between regions: topic naming, the local spool and the Kafka
emitter.

- `topics`: what the topics are called and how they are created (idempotently).
- `spool`: an append-only, bounded, crash-safe file queue of encoded events; no Kafka in it.
- `emitter`: `EventEmitter`, which hands each announce's event to Kafka without ever blocking or
  failing the announce, spilling to the spool while Kafka is away and replaying it in order.
"""
