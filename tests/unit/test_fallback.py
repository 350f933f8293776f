"""The stale cache and the circuit breaker: values in, values out, a fake clock for the breaker."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.announce.fallback import (
    BreakerState,
    CircuitBreaker,
    StaleCache,
    stretched_interval,
)
from services.core.model import Event, Family, Peer, SwarmAnswer, SwarmStats

H1, H2, H3 = b"\x01" * 20, b"\x02" * 20, b"\x03" * 20
TTL = 100.0


def v4(n: int, port: int = 6881) -> Peer:
    return Peer(bytes((10, 0, n >> 8 & 255, n & 255)), port, b"-XX0001-" + n.to_bytes(12, "big"))


def v6(n: int, port: int = 6881) -> Peer:
    return Peer(b"\x20\x01" + bytes(12) + n.to_bytes(2, "big"), port)


def cache(**options: object) -> StaleCache:
    options.setdefault("merge_every", 0.0)
    return StaleCache(TTL, rng=random.Random(7), **options)  # type: ignore[arg-type]


def endpoints(answer: SwarmAnswer) -> set[tuple[bytes, int]]:
    return {p.endpoint for p in answer.peers}


# -- the stale cache ---------------------------------------------------------------------------

def test_a_lone_process_connects_its_own_clients() -> None:
    c = cache()
    a, b = v4(1), v4(2)
    c.remember_announce(H1, a, False, Event.STARTED, 10.0)
    first = c.answer(H1, a, False, 50, 10.0)
    assert first is not None and first[0].peers == ()
    c.remember_announce(H1, b, False, Event.STARTED, 11.0)
    answer, age = c.answer(H1, b, False, 50, 11.0) or (None, None)
    assert answer is not None and answer.peers == (a,)
    assert answer.stats == SwarmStats(0, 2, 0)
    assert age == 1.0  # since the torrent was first cached: no store answer ever refreshed it
    again = c.answer(H1, a, False, 50, 12.0)
    assert again is not None and again[0].peers == (b,)


def test_unknown_torrent_has_no_answer_and_no_counts() -> None:
    c = cache()
    assert c.answer(H1, v4(1), False, 50, 0.0) is None
    assert c.scrape(H1) is None
    c.remember_announce(H1, v4(1), False, Event.STOPPED, 0.0)  # a stop creates nothing
    assert len(c) == 0


def test_stopped_removes_the_peer_and_uncounts_it() -> None:
    c = cache()
    a, b = v4(1), v4(2)
    c.remember_announce(H1, a, True, Event.STARTED, 1.0)
    c.remember_announce(H1, b, False, Event.STARTED, 1.0)
    c.remember_announce(H1, a, True, Event.STOPPED, 2.0)
    answer = c.answer(H1, b, False, 50, 3.0)
    assert answer is not None and answer[0].peers == ()
    assert answer[0].stats == SwarmStats(0, 1, 0)
    assert c.peers_held == 1


def test_families_are_kept_apart() -> None:
    c = cache()
    c.remember_announce(H1, v4(1), False, Event.STARTED, 1.0)
    c.remember_announce(H1, v6(1), False, Event.STARTED, 1.0)
    c.remember_answer(H1, Family.IPV6, SwarmAnswer(SwarmStats(0, 5, 0), (v6(2), v6(3))), 1.0)
    answer = c.answer(H1, v4(9), False, 50, 2.0)
    assert answer is not None and endpoints(answer[0]) == {v4(1).endpoint}
    answer6 = c.answer(H1, v6(1), False, 50, 2.0)
    assert answer6 is not None and endpoints(answer6[0]) == {v6(2).endpoint, v6(3).endpoint}


def test_a_seeder_gets_leechers_then_unknowns_never_seeders() -> None:
    c = cache()
    leecher, seeder, unknown = v4(1), v4(2), v4(3)
    c.remember_announce(H1, leecher, False, Event.STARTED, 1.0)
    c.remember_announce(H1, seeder, True, Event.STARTED, 1.0)
    c.remember_answer(H1, Family.IPV4, SwarmAnswer(SwarmStats(), (unknown,)), 0.5)
    me = v4(4)
    one = c.answer(H1, me, True, 1, 2.0)
    assert one is not None and one[0].peers == (leecher,)
    many = c.answer(H1, me, True, 10, 2.0)
    assert many is not None and many[0].peers == (leecher, unknown)
    leecher_view = c.answer(H1, me, False, 10, 2.0)
    assert leecher_view is not None
    assert endpoints(leecher_view[0]) == {leecher.endpoint, seeder.endpoint, unknown.endpoint}


def test_the_requester_is_never_its_own_peer_whatever_the_cache_knows_of_it() -> None:
    c = cache()
    known_leecher, only_from_store = v4(1), v4(2)
    c.remember_announce(H1, known_leecher, False, Event.STARTED, 1.0)
    c.remember_answer(H1, Family.IPV4, SwarmAnswer(SwarmStats(), (only_from_store,)), 1.0)
    for me in (known_leecher, only_from_store):
        for seeder in (False, True):
            got = c.answer(H1, me, seeder, 50, 2.0)
            assert got is not None and me.endpoint not in endpoints(got[0])
            assert len(got[0].peers) == 1


def test_peers_a_seeder_was_given_are_known_leechers() -> None:
    c = cache()
    c.remember_answer(H1, Family.IPV4, SwarmAnswer(SwarmStats(1, 1, 0), (v4(1),)), 1.0,
                      requester_seeder=True)
    c.remember_answer(H1, Family.IPV4, SwarmAnswer(SwarmStats(1, 1, 0), (v4(2),)), 1.0)
    answer = c.answer(H1, v4(3), True, 1, 2.0)
    assert answer is not None and answer[0].peers == (v4(1),)


def test_peers_older_than_the_ttl_are_never_handed_out() -> None:
    c = cache()
    c.remember_announce(H1, v4(1), False, Event.STARTED, 0.0)
    c.remember_answer(H1, Family.IPV4, SwarmAnswer(SwarmStats(0, 2, 0), (v4(2),)), 50.0)
    answer = c.answer(H1, v4(3), False, 50, TTL + 1)
    assert answer is not None and answer[0].peers == (v4(2),)
    assert c.peers_held == 1  # the expired one is gone, not only hidden
    later = c.answer(H1, v4(3), False, 50, 50.0 + TTL)
    assert later is not None and later[0].peers == ()


def test_numwant_and_random_choice() -> None:
    c = cache()
    for n in range(30):
        c.remember_announce(H1, v4(n), False, Event.STARTED, 1.0)
    seen: set[tuple[bytes, int]] = set()
    for _ in range(20):
        answer = c.answer(H1, v4(0), False, 5, 2.0)
        assert answer is not None and len(answer[0].peers) == 5
        assert v4(0).endpoint not in endpoints(answer[0])
        seen |= endpoints(answer[0])
    assert len(seen) > 10  # not always the same five
    zero = c.answer(H1, v4(0), False, 0, 2.0)
    assert zero is not None and zero[0].peers == ()


def test_a_store_answer_refreshes_counts_and_age() -> None:
    c = cache()
    c.remember_answer(H1, Family.IPV4, SwarmAnswer(SwarmStats(3, 4, 5), (v4(1),)), 100.0)
    answer = c.answer(H1, v4(9), False, 50, 130.0)
    assert answer is not None and answer == (SwarmAnswer(SwarmStats(3, 4, 5), (v4(1),)), 30.0)
    c.remember_answer(H1, Family.IPV4, SwarmAnswer(SwarmStats(1, 1, 1), ()), 90.0)
    assert c.scrape(H1) == SwarmStats(3, 4, 5)  # an older answer does not replace newer counts
    assert c.answer(H1, v4(9), False, 50, 100.0, max_age=10) is not None
    assert c.answer(H1, v4(9), False, 50, 200.0, max_age=10) is None


def test_answer_peers_join_at_most_every_merge_period_counts_always() -> None:
    c = cache(merge_every=10.0)
    c.remember_answer(H1, Family.IPV4, SwarmAnswer(SwarmStats(1, 1, 0), (v4(1),)), 100.0)
    c.remember_answer(H1, Family.IPV4, SwarmAnswer(SwarmStats(2, 2, 0), (v4(2),)), 105.0)
    c.remember_answer(H1, Family.IPV6, SwarmAnswer(SwarmStats(3, 3, 0), (v6(2),)), 105.0)
    answer = c.answer(H1, v4(9), False, 50, 106.0)
    assert answer is not None and answer[0] == SwarmAnswer(SwarmStats(3, 3, 0), (v4(1),))
    assert answer[1] == 1.0
    answer6 = c.answer(H1, v6(9), False, 50, 106.0)
    assert answer6 is not None and answer6[0].peers == (v6(2),)  # the family's own period
    c.remember_answer(H1, Family.IPV4, SwarmAnswer(SwarmStats(2, 2, 0), (v4(2),)), 110.0)
    answer = c.answer(H1, v4(9), False, 50, 111.0)
    assert answer is not None and endpoints(answer[0]) == {v4(1).endpoint, v4(2).endpoint}


@pytest.mark.parametrize("write_through_first", [True, False])
def test_healthy_announces_are_not_counted_twice(write_through_first: bool) -> None:
    """The store's counts include the announce that got them; either call order gives them."""
    c = cache()
    me = v4(1)
    store_answer = SwarmAnswer(SwarmStats(2, 7, 1), (v4(2),))
    calls = [lambda: c.remember_announce(H1, me, False, Event.STARTED, 5.0),
             lambda: c.remember_answer(H1, Family.IPV4, store_answer, 5.0)]
    for call in calls if write_through_first else reversed(calls):
        call()
    assert c.scrape(H1) == SwarmStats(2, 7, 1)
    # Degraded afterwards: own announces adjust the last good counts.
    c.remember_announce(H1, v4(3), True, Event.STARTED, 6.0)  # a new seeder
    c.remember_announce(H1, me, True, Event.COMPLETED, 7.0)  # a known leecher finished
    assert c.scrape(H1) == SwarmStats(4, 6, 2)
    c.remember_announce(H1, v4(3), True, Event.STOPPED, 8.0)
    assert c.scrape(H1) == SwarmStats(3, 6, 2)


def test_counts_never_go_negative() -> None:
    c = cache()
    c.remember_answer(H1, Family.IPV4, SwarmAnswer(SwarmStats(0, 0, 0), (v4(1),)), 1.0)
    c.remember_announce(H1, v4(1), True, Event.STOPPED, 2.0)
    assert c.scrape(H1) == SwarmStats(0, 0, 0)


def test_peers_per_family_bound_keeps_the_newest() -> None:
    c = cache(peers_per_family=3, max_peers=6)
    for n in range(10):
        c.remember_announce(H1, v4(n), False, Event.STARTED, float(n))
    answer = c.answer(H1, v4(99), False, 50, 10.0)
    assert answer is not None and endpoints(answer[0]) == {v4(n).endpoint for n in (7, 8, 9)}
    assert answer[0].stats.incomplete == 3  # the evicted were uncounted
    assert c.peers_held == 3


def test_least_recently_used_torrent_goes_first() -> None:
    c = cache(max_torrents=2)
    c.remember_announce(H1, v4(1), False, Event.STARTED, 1.0)
    c.remember_announce(H2, v4(1), False, Event.STARTED, 2.0)
    assert c.answer(H1, v4(2), False, 5, 3.0) is not None  # H1 is now the most recent
    c.remember_announce(H3, v4(1), False, Event.STARTED, 4.0)
    assert c.scrape(H2) is None and c.scrape(H1) is not None and c.scrape(H3) is not None
    assert c.evicted_torrents == 1 and c.peers_held == 2


def test_total_peer_bound_evicts_whole_torrents() -> None:
    c = cache(peers_per_family=5, max_peers=10)
    for t in range(5):
        for n in range(5):
            c.remember_announce(bytes([t]) * 20, v4(n), False, Event.STARTED, 1.0)
        assert c.peers_held <= 10
    assert len(c) == 2


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_peers"):
        StaleCache(TTL, peers_per_family=100, max_peers=150)
    with pytest.raises(ValueError):
        StaleCache(0)


def test_stretched_interval_stays_below_the_peer_ttl() -> None:
    assert stretched_interval(1800, 4, 3600) == 3240
    assert stretched_interval(600, 2, 3600) == 1200
    assert stretched_interval(1800, 0.5, 3600) == 1800  # never shorter
    assert stretched_interval(1800, 4, 1000) == 1800  # a TTL below the interval: no stretch


_hashes = st.sampled_from([H1, H2, H3, b"\x04" * 20])
_peers = st.builds(lambda n, six, port: v6(n, port) if six else v4(n, port),
                   st.integers(0, 4), st.booleans(), st.sampled_from([1, 2]))
# Mostly small steps (peers live 20 s), now and then one past the TTL.
_steps = st.one_of(st.floats(0, 2), st.floats(0, 2), st.floats(0, 2), st.floats(0, 30))
_ops = st.one_of(
    st.tuples(st.just("announce"), _hashes, _peers, st.booleans(),
              st.sampled_from(list(Event)), _steps),
    st.tuples(st.just("answer"), _hashes, _peers, st.booleans(), st.integers(0, 8), _steps),
    # the degraded announce path: the announcing peer asks right after its write-through
    st.tuples(st.just("echo"), st.integers(0, 8), st.just(0.0)),
    st.tuples(st.just("store"), _hashes, st.lists(_peers, max_size=6), st.booleans(),
              st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9)), _steps),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ops, max_size=60))
def test_any_sequence_keeps_the_rules_and_the_bounds(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    c = StaleCache(20.0, max_torrents=3, peers_per_family=4, max_peers=10, merge_every=0,
                   rng=random.Random(1))
    last_seen: dict[tuple[bytes, tuple[bytes, int]], float] = {}
    last_announce = (H1, v4(0), False)
    now = 0.0
    for op in ops:
        now += op[-1]
        if op[0] == "echo":
            op = ("answer", *last_announce, op[1], 0.0)
        if op[0] == "announce":
            _, h, peer, seeder, event, _ = op
            c.remember_announce(h, peer, seeder, event, now)
            last_seen[h, peer.endpoint] = now
            last_announce = (h, peer, seeder)
        elif op[0] == "store":
            _, h, peers, to_seeder, counts, _ = op
            family = peers[0].family if peers else Family.IPV4
            same = tuple({p.endpoint: p for p in peers if p.family is family}.values())
            c.remember_answer(h, family, SwarmAnswer(SwarmStats(*counts), same), now,
                              requester_seeder=to_seeder)
            for p in same:
                last_seen[h, p.endpoint] = now
        else:
            _, h, peer, seeder, numwant, _ = op
            got = c.answer(h, peer, seeder, numwant, now)
            if got is None:
                continue
            answer, age = got
            assert age >= 0
            assert len(answer.peers) <= numwant
            assert peer.endpoint not in endpoints(answer)
            assert all(p.family is peer.family for p in answer.peers)
            assert len(endpoints(answer)) == len(answer.peers)
            cached = c._torrents[h].peers(peer.family) or {}
            for p in answer.peers:
                assert now - last_seen[h, p.endpoint] < 20.0
                if seeder:  # a seeder is never given a peer the cache knows to seed
                    assert cached[p.endpoint].seeder is not True
            stats = answer.stats
            assert min(stats.complete, stats.incomplete, stats.downloaded) >= 0
        assert len(c) <= 3
        assert 0 <= c.peers_held <= 10
        assert c.peers_held == sum(t.size() for t in c._torrents.values())


def test_many_torrents_stay_within_the_bounds() -> None:
    c = StaleCache(TTL, max_torrents=1000, peers_per_family=20, max_peers=5000)
    rng = random.Random(3)
    for i in range(20_000):
        h = rng.getrandbits(160).to_bytes(20, "big")
        c.remember_answer(h, Family.IPV4, SwarmAnswer(
            SwarmStats(1, 1, 0), tuple(v4(n) for n in range(rng.randrange(0, 30)))), float(i))
        c.remember_announce(h, v6(i & 0xFFFF), False, Event.STARTED, float(i))
        assert len(c) <= 1000 and c.peers_held <= 5000
    assert c.evicted_torrents >= 19_000


# -- the circuit breaker -----------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(**options: object) -> tuple[CircuitBreaker, FakeClock, list[tuple[str, str]]]:
    clock = FakeClock()
    changes: list[tuple[str, str]] = []
    b = CircuitBreaker(clock=clock, on_change=lambda old, new: changes.append((old.value, new.value)),
                       **options)  # type: ignore[arg-type]
    return b, clock, changes


def test_breaker_opens_after_consecutive_failures_only() -> None:
    b, _, changes = breaker(failure_threshold=3)
    for _ in range(2):
        b.record_failure()
    b.record_success()  # breaks the run
    b.record_failure()
    b.record_failure()
    assert b.state is BreakerState.CLOSED and b.allow()
    b.record_failure()
    assert b.state is BreakerState.OPEN and not b.allow()
    assert changes == [("closed", "open")]


def test_breaker_half_opens_probes_and_closes() -> None:
    b, clock, changes = breaker(failure_threshold=1, open_seconds=5, probe_count=2)
    b.record_failure()
    clock.now += 4.9
    assert not b.allow()
    clock.now += 0.1
    assert b.allow() and b.state is BreakerState.HALF_OPEN
    assert b.allow()  # the second probe
    assert not b.allow()  # the rest are answered from the cache
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.allow()
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_probe_opens_again_for_the_full_period() -> None:
    b, clock, changes = breaker(failure_threshold=2, open_seconds=5)
    b.record_failure()
    b.record_failure()
    clock.now += 5
    assert b.allow()
    clock.now += 1
    b.record_failure()
    assert b.state is BreakerState.OPEN
    clock.now += 4.9
    assert not b.allow()
    clock.now += 0.1
    assert b.allow()
    assert changes[-2:] == [("half_open", "open"), ("open", "half_open")]


def test_probes_that_never_report_do_not_wedge_the_breaker() -> None:
    b, clock, _ = breaker(failure_threshold=1, open_seconds=5, probe_count=1)
    b.record_failure()
    clock.now += 5
    assert b.allow()  # this probe's caller is cancelled and never reports
    clock.now += 4
    assert not b.allow()
    clock.now += 1
    assert b.allow() and b.state is BreakerState.HALF_OPEN


def test_late_outcomes_while_open_change_nothing() -> None:
    b, clock, _ = breaker(failure_threshold=1, open_seconds=5)
    b.record_failure()
    b.record_success()  # a call that began before the breaker opened
    assert b.state is BreakerState.OPEN
    clock.now += 3
    b.record_failure()  # does not extend the open period
    clock.now += 2
    assert b.allow()


def test_a_failing_listener_does_not_break_the_breaker() -> None:
    def boom(old: BreakerState, new: BreakerState) -> None:
        raise RuntimeError("metrics down")

    b = CircuitBreaker(failure_threshold=1, on_change=boom)
    b.record_failure()
    assert b.state is BreakerState.OPEN


def test_breaker_refuses_bad_settings() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker(open_seconds=0)


_EDGES = {("closed", "open"), ("open", "half_open"), ("half_open", "closed"),
          ("half_open", "open")}
_breaker_ops = st.lists(st.one_of(st.just("allow"), st.just("ok"), st.just("fail"),
                                  st.floats(0, 4)), max_size=80)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4), st.floats(0.5, 5), st.integers(1, 3), _breaker_ops)
def test_any_sequence_keeps_the_breaker_invariants(threshold: int, open_seconds: float,
                                                   probes: int, ops: list[object]) -> None:
    b, clock, changes = breaker(failure_threshold=threshold, open_seconds=open_seconds,
                                probe_count=probes)
    run = 0  # consecutive failures recorded while closed
    opened_at = half_opened_at = 0.0
    let_through = 0  # allowed since the breaker last half-opened
    for op in ops:
        before = b.state
        count = len(changes)
        if isinstance(op, float):
            clock.now += op
        elif op == "allow":
            allowed = b.allow()
            if before is BreakerState.CLOSED:
                assert allowed
            elif before is BreakerState.OPEN and clock.now - opened_at < open_seconds:
                assert not allowed and b.state is BreakerState.OPEN
            if allowed and b.state is BreakerState.HALF_OPEN:
                if before is BreakerState.OPEN:
                    half_opened_at, let_through = clock.now, 0
                let_through += 1
                rounds = 1 + int((clock.now - half_opened_at) // open_seconds)
                assert let_through <= probes * rounds
        elif op == "ok":
            b.record_success()
            if before is BreakerState.HALF_OPEN:
                assert b.state is BreakerState.CLOSED
            if before is not BreakerState.HALF_OPEN:
                assert b.state is before
            run = 0
        else:
            b.record_failure()
            if before is BreakerState.CLOSED:
                run += 1
                assert (b.state is BreakerState.OPEN) == (run >= threshold)
            elif before is BreakerState.HALF_OPEN:
                assert b.state is BreakerState.OPEN
            else:
                assert b.state is BreakerState.OPEN
        if b.state is BreakerState.OPEN and before is not BreakerState.OPEN:
            opened_at, run = clock.now, 0
        for old, new in changes[count:]:
            assert (old, new) in _EDGES
        if changes:
            assert changes[-1][1] == b.state.value
        if b.state is BreakerState.CLOSED:
            assert b.consecutive_failures < threshold
