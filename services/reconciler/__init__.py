"""The reconciler: consumes other regions' announce events from Kafka and merges them into the
local store (last writer wins per peer by hybrid logical clock). Built in a later issue."""
