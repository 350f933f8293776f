"""Announce events, the hybrid logical clock and the merge rule."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core import events as ev
from services.core.hlc import HybridClock, from_seconds, physical_ms
from services.core.merge import live, merge, record_of
from services.core.model import Event

TOMBSTONE_MS = 7_200_000

names = st.sampled_from(["eu", "us", "ap"])
announce_events = st.builds(
    ev.AnnounceEvent,
    region=names,
    node=st.sampled_from(["n1", "n2"]),
    hlc=st.integers(0, 2**20),  # small range: many equal timestamps, so ties are exercised
    info_hash=st.sampled_from([b"A" * 20, b"B" * 20]),
    ip=st.sampled_from([bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), bytes(15) + b"\x01"]),
    port=st.sampled_from([6881, 6882]),
    peer_id=st.binary(min_size=20, max_size=20),
    kind=st.sampled_from(list(Event)),
    seeder=st.booleans(),
    expires_ms=st.integers(0, 2**40),
)


@given(announce_events)
def test_event_encoding_round_trip(event: ev.AnnounceEvent) -> None:
    assert ev.decode(event.encode()) == event


@given(announce_events, st.integers(0, 200))
def test_truncated_events_are_refused_with_a_reason(event: ev.AnnounceEvent, cut: int) -> None:
    data = event.encode()
    cut = cut % len(data)
    with pytest.raises(ev.EventDecodeError):
        ev.decode(data[:cut])


def test_unknown_schema_version_is_refused_clearly() -> None:
    with pytest.raises(ev.EventDecodeError, match="schema version 9"):
        ev.decode(b"\x09" + b"\x00" * 80)


def test_compact_encoding_is_small() -> None:
    event = ev.AnnounceEvent(region="eu-west", node="node-17", hlc=from_seconds(1.8e9),
                             info_hash=b"h" * 20, ip=bytes(4), port=1, peer_id=b"p" * 20,
                             kind=Event.UPDATE, seeder=False, expires_ms=1)
    assert len(event.encode()) < 100


@settings(max_examples=200)
@given(st.lists(announce_events, max_size=30, unique_by=lambda e: e.version), st.randoms())
def test_merge_ignores_order_and_duplicates(events: list[ev.AnnounceEvent], rnd: random.Random) -> None:
    """A version names one write: a node's clock never stamps two events alike."""
    reference = merge({}, events, TOMBSTONE_MS)
    shuffled = events + rnd.sample(events, len(events) // 2)  # duplicates
    rnd.shuffle(shuffled)
    assert merge({}, shuffled, TOMBSTONE_MS) == reference
    # merging in two batches, in any split, converges to the same state
    split = rnd.randint(0, len(shuffled))
    assert merge(merge({}, shuffled[:split], TOMBSTONE_MS), shuffled[split:], TOMBSTONE_MS) \
        == reference
    assert merge(reference, events, TOMBSTONE_MS) == reference  # idempotent


@given(announce_events, announce_events)
def test_tombstone_wins_only_over_older_writes(write: ev.AnnounceEvent,
                                               stop: ev.AnnounceEvent) -> None:
    write = write.model_copy(update={"kind": Event.STARTED})
    stop = stop.model_copy(update={"kind": Event.STOPPED, "info_hash": write.info_hash,
                                   "ip": write.ip, "port": write.port})
    state = merge({}, [write, stop], TOMBSTONE_MS)
    record = state[write.peer_key]
    if stop.version > write.version:
        assert record.removed
    elif stop.version < write.version:
        assert not record.removed


def test_tombstone_outlives_the_peer() -> None:
    started = ev.AnnounceEvent(region="eu", node="a", hlc=from_seconds(1000), info_hash=b"h" * 20,
                               ip=bytes(4), port=1, peer_id=b"", kind=Event.STARTED, seeder=False,
                               expires_ms=1000_000 + 3600_000)
    stopped = started.model_copy(update={"hlc": from_seconds(1001), "kind": Event.STOPPED,
                                         "expires_ms": 1001_000 + 3600_000})
    late_start = started.model_copy(update={"hlc": from_seconds(1000.5)})
    state = merge({}, [started, stopped, late_start], TOMBSTONE_MS)
    assert live(state, 1002_000) == {}
    assert state[started.peer_key].expires_ms >= 1001_000 + TOMBSTONE_MS
    assert record_of(stopped, TOMBSTONE_MS).removed


def test_hybrid_clock_is_monotonic_and_follows_remote_time() -> None:
    wall = [100.0]
    clock = HybridClock(lambda: wall[0])
    first = clock.tick()
    wall[0] = 99.0  # the wall clock steps back
    second = clock.tick()
    assert second > first
    remote = from_seconds(500)
    after = clock.observe(remote)
    assert after > remote and clock.tick() > after
    assert physical_ms(first) == 100_000
