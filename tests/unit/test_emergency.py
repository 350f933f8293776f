"""Emergency mode's pure parts: the record, which of two channels wins, the policy, the topic
name; and the watcher's store channel against the in-memory store (no Kafka)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ops.emergency import (
    FLAG,
    EmergencyError,
    EmergencyPolicy,
    EmergencyState,
    EmergencyWatcher,
    newest,
    set_emergency,
)
from services.settings import Settings
from services.stores.base import StoreUnavailable
from services.stores.memory import MemoryPeerStore
from services.stream.topics import TopicError, control_topic, region_of_topic, region_topic

states = st.builds(EmergencyState, st.booleans(),
                   st.floats(0, 4e9, allow_nan=False, allow_infinity=False),
                   st.text(max_size=30))


def test_the_newest_record_wins_whichever_channel_it_came_from() -> None:
    on_redis = EmergencyState(True, 100.0, "alice")
    off_kafka = EmergencyState(False, 200.0, "bob")
    assert newest(on_redis, off_kafka) is off_kafka
    assert newest(off_kafka, on_redis) is off_kafka
    assert newest(on_redis, None) is on_redis
    assert newest(None, None) is None
    assert newest() is None


def test_a_tie_goes_to_emergency() -> None:
    assert newest(EmergencyState(False, 5.0), EmergencyState(True, 5.0)) == EmergencyState(True, 5.0)


@given(st.none() | states, st.none() | states)
def test_newest_is_order_free_and_picks_the_latest(a: EmergencyState | None,
                                                  b: EmergencyState | None) -> None:
    winner = newest(a, b)
    assert winner == newest(b, a)
    known = [s for s in (a, b) if s is not None]
    if not known:
        assert winner is None
    else:
        assert winner in known
        assert winner is not None and winner.set_at == max(s.set_at for s in known)


@given(states)
def test_records_round_trip(state: EmergencyState) -> None:
    assert EmergencyState.decode(state.encode()) == state
    assert EmergencyState.decode(state.encode().encode()) == state


@pytest.mark.parametrize("raw", [b"", b"1", b"on", b"[]", b'{"emergency": 1, "set_at": 1}',
                                 b'{"emergency": true}', b'{"emergency": true, "set_at": "x"}',
                                 b'{"emergency": true, "set_at": true}',
                                 b'{"emergency": true, "set_at": NaN}',
                                 b'{"emergency": true, "set_at": 1, "by": 3}', b"\xff\xfe"])
def test_bad_records_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        EmergencyState.decode(raw)


def test_policy_stretches_intervals_below_the_peer_ttl_and_caps_limits() -> None:
    settings = Settings.load(announce_interval=1800, min_announce_interval=900)
    policy = EmergencyPolicy.from_settings(settings)
    assert policy == EmergencyPolicy()
    interval, min_interval = policy.intervals(settings)
    assert interval == 3240 < settings.effective_peer_ttl  # 4 x 1800 would outlive the TTL
    assert min_interval == 3240
    short = Settings.load(announce_interval=300, min_announce_interval=60, peer_ttl=3600)
    assert EmergencyPolicy().intervals(short) == (1200, 240)
    assert policy.cap_numwant(200) == 25 and policy.cap_numwant(10) == 10


def test_the_control_topic_is_no_region() -> None:
    assert control_topic() == "meridian.announces.control"
    assert control_topic("x.y") == "x.y.control"
    assert region_of_topic(control_topic()) is None
    with pytest.raises(TopicError, match="reserved"):
        region_topic("control")


# -- the switch and the watcher on the in-memory store ----------------------------------------

class FlakyStore(MemoryPeerStore):
    """The in-memory store with an off switch for `get_flag`/`set_flag`."""

    def __init__(self) -> None:
        super().__init__(peer_ttl=60)
        self.down = False

    async def get_flag(self, name: str) -> str | None:
        if self.down:
            raise StoreUnavailable("down for the test")
        return await super().get_flag(name)

    async def set_flag(self, name: str, value: str | None, ttl: float | None = None) -> None:
        if self.down:
            raise StoreUnavailable("down for the test")
        await super().set_flag(name, value, ttl)


def test_switch_and_watcher_over_the_store_flag() -> None:
    async def scenario() -> None:
        settings = Settings.load(region="eu-west")
        store = FlakyStore()
        heard: list[bool] = []
        watcher = EmergencyWatcher(settings, store, poll_interval=0.02,
                                   on_change=lambda active, state: heard.append(active))
        await watcher.start()
        try:
            assert not watcher.active and watcher.state is None
            report = await set_emergency(settings, "eu-west", True, store, by="test",
                                         clock=lambda: 100.0)
            assert report["ok"] and report["channels"] == {
                "store": "ok", "kafka": "skipped: no kafka_bootstrap"}
            assert EmergencyState.decode(await store.get_flag(FLAG) or "") == \
                EmergencyState(True, 100.0, "test")
            await asyncio.sleep(0.1)
            assert watcher.active and heard == [True]

            store.down = True  # an unreadable store keeps the last record
            await asyncio.sleep(0.1)
            assert watcher.active and not watcher.healthy["store"]
            with pytest.raises(EmergencyError, match="NOT switched off") as failed:
                await set_emergency(settings, "eu-west", False, store, clock=lambda: 200.0)
            assert failed.value.report["channels"]["store"].startswith("failed")

            store.down = False
            await set_emergency(settings, "eu-west", False, store, clock=lambda: 300.0)
            await asyncio.sleep(0.1)
            assert not watcher.active and heard == [True, False]
            # A record from the other channel that is older than the store's does not win.
            watcher.offer("kafka", EmergencyState(True, 250.0))
            assert not watcher.active
            watcher.offer("kafka", EmergencyState(True, 350.0))
            assert watcher.active and heard == [True, False, True]
        finally:
            await watcher.close()

    asyncio.run(scenario())


def test_a_vanished_flag_or_a_bad_one_is_no_news() -> None:
    async def scenario() -> None:
        store = FlakyStore()
        watcher = EmergencyWatcher(Settings.load(region="eu-west"), store)
        await store.set_flag(FLAG, EmergencyState(True, 10.0).encode())
        await watcher.poll_store()
        assert watcher.active
        await store.set_flag(FLAG, None)  # Redis restarted empty
        await watcher.poll_store()
        assert watcher.active
        await store.set_flag(FLAG, "yes please")
        await watcher.poll_store()
        assert watcher.active and watcher.state == EmergencyState(True, 10.0)

    asyncio.run(scenario())


def test_memory_store_is_not_a_channel_for_other_processes() -> None:
    async def scenario() -> None:
        with pytest.raises(EmergencyError, match="memory://"):
            await set_emergency(Settings.load(region="eu-west"), "eu-west", True)

    asyncio.run(scenario())

