"""The PeerStore contract: every duty of `services.stores.base.PeerStore`, against every store.

Each test runs once per store kind (memory, Redis, Redis Cluster; see conftest.py). A new store
is done when this file passes against it. Times are the caller's `now` (whole seconds, far from
the real clock), so expiry is exact and no test sleeps.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.core.events import AnnounceEvent
from services.core.model import Event, Peer, SwarmAnswer, SwarmStats
from services.stores.base import PeerStore

from .conftest import PEER_TTL, StoreFactory

T0 = 1_000_000.0
TORRENT = bytes(range(20))
OTHER = bytes(range(20, 40))


def v4(n: int, port: int = 6881, peer_id: bytes | None = None) -> Peer:
    return Peer(bytes([10, 1, n // 256, n % 256]), port,
                peer_id if peer_id is not None else b"-MR0001-" + n.to_bytes(12, "big"))


def v6(n: int, port: int = 6881, peer_id: bytes | None = None) -> Peer:
    return Peer(bytes.fromhex("20010db8000000000000000000000000")[:14] + n.to_bytes(2, "big"),
                port, peer_id if peer_id is not None else b"-MR0006-" + n.to_bytes(12, "big"))


async def join(store: PeerStore, peers: Sequence[Peer], seeder: bool = False,
               now: float = T0, info_hash: bytes = TORRENT) -> None:
    for peer in peers:
        await store.announce(info_hash, peer, Event.STARTED, seeder, 0, now)


def endpoints(answer: SwarmAnswer) -> set[tuple[bytes, int]]:
    return {p.endpoint for p in answer.peers}


# -- identity ---------------------------------------------------------------------------------

async def test_reannounce_from_same_endpoint_replaces(store: PeerStore) -> None:
    await store.announce(TORRENT, v4(1, peer_id=b"A" * 20), Event.STARTED, False, 0, T0)
    await store.announce(TORRENT, v4(1, peer_id=b"B" * 20), Event.UPDATE, False, 0, T0 + 1)
    answer = await store.announce(TORRENT, v4(2), Event.STARTED, False, 50, T0 + 2)
    assert answer.stats == SwarmStats(0, 2, 0)
    assert [(p.endpoint, p.peer_id) for p in answer.peers] == [(v4(1).endpoint, b"B" * 20)]


async def test_copied_peer_id_from_another_endpoint_is_another_peer(store: PeerStore) -> None:
    same_id = b"C" * 20
    await store.announce(TORRENT, v4(1, peer_id=same_id), Event.STARTED, True, 0, T0)
    await store.announce(TORRENT, v4(2, peer_id=same_id), Event.STARTED, False, 0, T0)
    await store.announce(TORRENT, v4(1, port=7000, peer_id=same_id), Event.STARTED, False, 0, T0)
    answer = await store.announce(TORRENT, v4(3), Event.STARTED, False, 50, T0)
    assert answer.stats == SwarmStats(1, 3, 0)
    assert endpoints(answer) == {v4(1).endpoint, v4(2).endpoint, v4(1, port=7000).endpoint}
    assert {p.peer_id for p in answer.peers} == {same_id}


async def test_leecher_becoming_seeder_moves_between_counts(store: PeerStore) -> None:
    await join(store, [v4(1), v4(2)])
    answer = await store.announce(TORRENT, v4(1), Event.COMPLETED, True, 50, T0 + 1)
    assert answer.stats == SwarmStats(1, 1, 1)
    assert endpoints(answer) == {v4(2).endpoint}
    back = await store.announce(TORRENT, v4(1), Event.UPDATE, False, 50, T0 + 2)
    assert back.stats == SwarmStats(0, 2, 1)


# -- families ---------------------------------------------------------------------------------

async def test_families_answer_apart_and_count_together(store: PeerStore) -> None:
    await join(store, [v4(1), v4(2)])
    await join(store, [v6(1), v6(2), v6(3)], seeder=True)
    four = await store.announce(TORRENT, v4(3), Event.STARTED, False, 50, T0)
    six = await store.announce(TORRENT, v6(4), Event.STARTED, False, 50, T0)
    assert four.stats == SwarmStats(3, 3, 0)
    assert endpoints(four) == {v4(1).endpoint, v4(2).endpoint}
    assert six.stats == SwarmStats(3, 4, 0)
    assert endpoints(six) == {v6(1).endpoint, v6(2).endpoint, v6(3).endpoint}
    assert all(len(p.ip) == 16 for p in six.peers)
    assert await store.scrape([TORRENT], T0) == [SwarmStats(3, 4, 0)]


async def test_same_address_bytes_in_both_families_do_not_collide(store: PeerStore) -> None:
    four, six = Peer(b"\x0a\x00\x00\x01", 6881), Peer(b"\x00" * 12 + b"\x0a\x00\x00\x01", 6881)
    await join(store, [four, six])
    assert (await store.scrape([TORRENT], T0)) == [SwarmStats(0, 2, 0)]
    answer = await store.announce(TORRENT, v4(9), Event.STARTED, False, 50, T0)
    assert endpoints(answer) == {four.endpoint}


# -- expiry -----------------------------------------------------------------------------------

async def test_silent_peer_expires_after_peer_ttl(store: PeerStore) -> None:
    await join(store, [v4(1)], seeder=True)
    await join(store, [v6(1)])
    last_alive = await store.announce(TORRENT, v4(2), Event.STARTED, False, 50,
                                      T0 + PEER_TTL - 1)
    assert last_alive.stats == SwarmStats(1, 2, 0)
    assert endpoints(last_alive) == {v4(1).endpoint}
    gone = await store.announce(TORRENT, v4(3), Event.STARTED, False, 50, T0 + PEER_TTL)
    assert gone.stats == SwarmStats(0, 2, 0)  # v4(2) and v4(3) remain
    assert endpoints(gone) == {v4(2).endpoint}
    assert await store.scrape([TORRENT], T0 + PEER_TTL) == [SwarmStats(0, 2, 0)]


async def test_expired_peers_are_not_counted_by_scrape_before_anyone_announces(
        store: PeerStore) -> None:
    await join(store, [v4(1), v6(1)])
    await join(store, [v4(2)], seeder=True, now=T0 + 10)
    assert await store.scrape([TORRENT], T0 + PEER_TTL - 1) == [SwarmStats(1, 2, 0)]
    assert await store.scrape([TORRENT], T0 + PEER_TTL) == [SwarmStats(1, 0, 0)]
    assert await store.scrape([TORRENT], T0 + PEER_TTL + 10) == [SwarmStats(0, 0, 0)]


async def test_reannounce_extends_life(store: PeerStore) -> None:
    await join(store, [v4(1)])
    await store.announce(TORRENT, v4(1), Event.UPDATE, False, 0, T0 + PEER_TTL - 1)
    answer = await store.announce(TORRENT, v4(2), Event.STARTED, False, 50, T0 + PEER_TTL + 5)
    assert endpoints(answer) == {v4(1).endpoint}


# -- answers ----------------------------------------------------------------------------------

async def test_numwant_caps_the_answer_and_never_returns_self(store: PeerStore) -> None:
    swarm = [v4(n) for n in range(30)]
    await join(store, swarm[:20])
    await join(store, swarm[20:], seeder=True)
    me = swarm[5]
    for numwant in (0, 1, 10, 28, 29, 30, 200):
        answer = await store.announce(TORRENT, me, Event.UPDATE, False, numwant, T0)
        assert len(answer.peers) == min(numwant, 29)
        assert me.endpoint not in endpoints(answer)
        assert len(endpoints(answer)) == len(answer.peers)
        assert answer.stats == SwarmStats(10, 20, 0)


async def test_seeder_gets_leechers_only(store: PeerStore) -> None:
    leechers = [v4(n) for n in range(5)]
    seeders = [v4(n) for n in range(5, 15)]
    await join(store, leechers)
    await join(store, seeders, seeder=True)
    answer = await store.announce(TORRENT, seeders[0], Event.UPDATE, True, 50, T0)
    assert endpoints(answer) == {p.endpoint for p in leechers}
    few = await store.announce(TORRENT, seeders[1], Event.UPDATE, True, 3, T0)
    assert len(few.peers) == 3 and endpoints(few) <= {p.endpoint for p in leechers}
    only_seeders = await store.announce(OTHER, seeders[0], Event.STARTED, True, 50, T0)
    await store.announce(OTHER, seeders[1], Event.STARTED, True, 50, T0)
    again = await store.announce(OTHER, seeders[0], Event.UPDATE, True, 50, T0)
    assert only_seeders.peers == () and again.peers == ()


async def test_leecher_gets_any_peers(store: PeerStore) -> None:
    leechers = [v4(n) for n in range(4)]
    seeders = [v4(n) for n in range(4, 8)]
    await join(store, leechers)
    await join(store, seeders, seeder=True)
    answer = await store.announce(TORRENT, leechers[0], Event.UPDATE, False, 50, T0)
    assert endpoints(answer) == {p.endpoint for p in leechers[1:] + seeders}


async def test_random_sample_from_a_large_swarm(store: PeerStore) -> None:
    swarm = [v4(n) for n in range(60)]
    await join(store, swarm[:30])
    await join(store, swarm[30:], seeder=True)
    members = {p.endpoint for p in swarm}
    seen: set[tuple[bytes, int]] = set()
    for n in range(20):
        me = swarm[n]
        answer = await store.announce(TORRENT, me, Event.UPDATE, False, 10, T0)
        picked = [p.endpoint for p in answer.peers]
        assert len(picked) == 10 == len(set(picked))
        assert set(picked) <= members - {me.endpoint}
        seen.update(picked)
    assert len(seen) > 25  # 20 samples of 10 out of 60: a fixed window would repeat itself
    seeders_seen: set[tuple[bytes, int]] = set()
    for n in range(30, 40):
        answer = await store.announce(TORRENT, swarm[n], Event.UPDATE, True, 5, T0)
        assert len(answer.peers) == 5 and endpoints(answer) <= {p.endpoint for p in swarm[:30]}
        seeders_seen |= endpoints(answer)
    assert len(seeders_seen) > 10


async def test_unknown_torrent_answers_empty(store: PeerStore) -> None:
    answer = await store.announce(TORRENT, v4(1), Event.STARTED, False, 50, T0)
    assert answer == SwarmAnswer(SwarmStats(0, 1, 0), ())


# -- events -----------------------------------------------------------------------------------

async def test_stopped_removes_the_peer_and_returns_no_peers(store: PeerStore) -> None:
    await join(store, [v4(1), v4(2)])
    await join(store, [v4(3)], seeder=True)
    answer = await store.announce(TORRENT, v4(1), Event.STOPPED, False, 50, T0 + 1)
    assert answer.peers == ()
    assert answer.stats == SwarmStats(1, 1, 0)
    left = await store.announce(TORRENT, v4(3), Event.STOPPED, True, 50, T0 + 1)
    assert left.peers == () and left.stats == SwarmStats(0, 1, 0)
    after = await store.announce(TORRENT, v4(9), Event.STARTED, False, 50, T0 + 2)
    assert endpoints(after) == {v4(2).endpoint}


async def test_stopped_from_a_stranger_is_harmless(store: PeerStore) -> None:
    await join(store, [v4(1)])
    answer = await store.announce(TORRENT, v4(2), Event.STOPPED, False, 50, T0)
    assert answer.peers == () and answer.stats == SwarmStats(0, 1, 0)
    nothing = await store.announce(OTHER, v4(2), Event.STOPPED, False, 50, T0)
    assert nothing == SwarmAnswer(SwarmStats(0, 0, 0), ())


async def test_completed_counts_downloads(store: PeerStore) -> None:
    await join(store, [v4(1), v4(2)])
    await store.announce(TORRENT, v4(1), Event.COMPLETED, True, 0, T0 + 1)
    answer = await store.announce(TORRENT, v4(2), Event.COMPLETED, True, 0, T0 + 2)
    assert answer.stats == SwarmStats(2, 0, 2)
    await store.announce(TORRENT, v4(2), Event.STOPPED, True, 0, T0 + 3)
    assert await store.scrape([TORRENT], T0 + 3) == [SwarmStats(1, 0, 2)]


# -- scrape -----------------------------------------------------------------------------------

async def test_scrape_many_in_order_with_zeros_for_unknown(store: PeerStore) -> None:
    hashes = [bytes([n]) * 20 for n in range(1, 9)]
    for n, info_hash in enumerate(hashes):
        await join(store, [v4(i) for i in range(n)], info_hash=info_hash)
        await join(store, [v6(i) for i in range(n % 3)], seeder=True, info_hash=info_hash)
    unknown = b"\xee" * 20
    asked = [hashes[3], unknown, *reversed(hashes), hashes[3]]
    stats = await store.scrape(asked, T0)
    expected = {h: SwarmStats(n % 3, n, 0) for n, h in enumerate(hashes)}
    expected[unknown] = SwarmStats()
    assert stats == [expected[h] for h in asked]
    assert await store.scrape([], T0) == []


async def test_full_scrape_respects_the_limit(store: PeerStore) -> None:
    hashes = [bytes([n]) * 20 for n in range(1, 6)]
    for n, info_hash in enumerate(hashes, start=1):
        await join(store, [v4(i) for i in range(n)], info_hash=info_hash)
    everything = await store.full_scrape(100, T0)
    assert everything == {h: SwarmStats(0, n, 0) for n, h in enumerate(hashes, start=1)}
    some = await store.full_scrape(3, T0)
    assert len(some) == 3 and all(everything[h] == s for h, s in some.items())


async def test_info_hashes_with_brace_bytes_stay_apart(store: PeerStore) -> None:
    tricky = [b"}" * 20, b"{" * 20, b"{}" * 10, b"a}" + bytes(18), b"*?[]\\" * 4]
    for n, info_hash in enumerate(tricky, start=1):
        await join(store, [v4(i) for i in range(n)], info_hash=info_hash)
    assert await store.scrape(tricky, T0) == [SwarmStats(0, n, 0) for n in range(1, 6)]
    assert set(await store.full_scrape(100, T0)) == set(tricky)


# -- garbage and bounds -----------------------------------------------------------------------

async def test_collect_garbage_removes_expired_peers_and_idle_swarms(store: PeerStore) -> None:
    await join(store, [v4(1), v4(2), v6(1)])
    await join(store, [v4(3)], seeder=True, info_hash=OTHER)
    await join(store, [v4(4)], seeder=True, info_hash=OTHER, now=T0 + 50)
    assert await store.collect_garbage(T0 + PEER_TTL - 1) == 0
    assert await store.collect_garbage(T0 + PEER_TTL) == 4
    assert await store.full_scrape(100, T0 + PEER_TTL) == {OTHER: SwarmStats(1, 0, 0)}
    assert await store.scrape([TORRENT], T0 + PEER_TTL) == [SwarmStats(0, 0, 0)]
    assert await store.collect_garbage(T0 + PEER_TTL + 50) == 1
    assert await store.full_scrape(100, T0 + PEER_TTL + 50) == {}


async def test_a_full_swarm_answers_but_does_not_store_newcomers(
        new_store: StoreFactory) -> None:
    store = await new_store(max_peers_per_swarm=3)
    await join(store, [v4(1), v4(2), v4(3)])
    newcomer = await store.announce(TORRENT, v4(4), Event.STARTED, False, 50, T0)
    assert endpoints(newcomer) == {v4(1).endpoint, v4(2).endpoint, v4(3).endpoint}
    assert newcomer.stats == SwarmStats(0, 3, 0)
    member = await store.announce(TORRENT, v4(1), Event.COMPLETED, True, 50, T0 + 1)
    assert member.stats == SwarmStats(1, 2, 1)
    other_family = await store.announce(TORRENT, v6(1), Event.STARTED, False, 50, T0 + 1)
    assert other_family.stats == SwarmStats(1, 3, 1)


async def test_ping_answers(store: PeerStore) -> None:
    await store.ping()


async def test_every_peer_of_a_large_swarm_gets_handed_out(store: PeerStore) -> None:
    swarm = [v4(n) for n in range(100)]
    await join(store, swarm[:50])
    await join(store, swarm[50:], seeder=True)
    handed: dict[tuple[bytes, int], int] = {}
    for n in range(200):
        answer = await store.announce(TORRENT, swarm[n % 50], Event.UPDATE, False, 20, T0)
        assert len(answer.peers) == 20
        for peer in answer.peers:
            handed[peer.endpoint] = handed.get(peer.endpoint, 0) + 1
    assert set(handed) == {p.endpoint for p in swarm}
    leechers = sum(c for e, c in handed.items() if e in {p.endpoint for p in swarm[:50]})
    assert 0.35 < leechers / 4000 < 0.65  # leechers and seeders in proportion to the swarm


# -- merging other regions' events --------------------------------------------------------------

def hlc(seconds: float, counter: int = 0) -> int:
    return (int(seconds * 1000) << 16) | counter


def merged(peer: Peer, kind: Event, at: float, *, counter: int = 0, seeder: bool = False,
           region: str = "eu", node: str = "n1", ttl: float = PEER_TTL,
           info_hash: bytes = TORRENT) -> AnnounceEvent:
    """An event another region's node emitted at `at` for `peer`."""
    return AnnounceEvent(region=region, node=node, hlc=hlc(at, counter), info_hash=info_hash,
                         ip=peer.ip, port=peer.port, peer_id=peer.peer_id, kind=kind,
                         seeder=seeder, expires_ms=int((at + ttl) * 1000))


async def test_a_merged_event_joins_the_swarm_once(store: PeerStore) -> None:
    event = merged(v4(1), Event.STARTED, T0, seeder=True)
    assert await store.apply([event], T0) == 1
    assert await store.apply([event, event], T0 + 1) == 0
    answer = await store.announce(TORRENT, v4(2), Event.STARTED, False, 50, T0 + 1)
    assert answer.stats == SwarmStats(1, 1, 0)
    assert [(p.endpoint, p.peer_id) for p in answer.peers] == [(v4(1).endpoint, v4(1).peer_id)]
    assert await store.apply([], T0) == 0


async def test_merged_peers_expire_at_their_own_expiry(store: PeerStore) -> None:
    await store.apply([merged(v4(1), Event.STARTED, T0 - 50), merged(v6(1), Event.STARTED, T0)],
                      T0)
    assert await store.scrape([TORRENT], T0 + PEER_TTL - 51) == [SwarmStats(0, 2, 0)]
    assert await store.scrape([TORRENT], T0 + PEER_TTL - 50) == [SwarmStats(0, 1, 0)]
    answer = await store.announce(TORRENT, v4(2), Event.STARTED, False, 50, T0 + PEER_TTL - 50)
    assert answer.peers == () and answer.stats == SwarmStats(0, 2, 0)


async def test_merging_is_order_free(store: PeerStore) -> None:
    events = [merged(v4(1), Event.STARTED, T0), merged(v4(1), Event.UPDATE, T0 + 5, seeder=True),
              merged(v4(2), Event.STARTED, T0 + 1), merged(v4(2), Event.STOPPED, T0 + 2),
              merged(v6(1), Event.UPDATE, T0 + 3, seeder=True),
              merged(v6(1), Event.UPDATE, T0 + 3, counter=1), merged(v4(3), Event.STARTED, T0)]
    forward = [e.model_copy(update={"info_hash": TORRENT}) for e in events]
    backward = [e.model_copy(update={"info_hash": OTHER}) for e in reversed(events)]
    assert await store.apply(forward, T0 + 10) == 7
    assert await store.apply(backward, T0 + 10) == 4  # each peer's newest write only
    assert await store.scrape([TORRENT, OTHER], T0 + 10) == [SwarmStats(1, 2, 0)] * 2
    for info_hash in (TORRENT, OTHER):
        assert await store.apply(forward + backward, T0 + 10) == 0  # replays change nothing
        answer = await store.announce(info_hash, v4(9), Event.STARTED, False, 50, T0 + 10)
        assert endpoints(answer) == {v4(1).endpoint, v4(3).endpoint}


async def test_a_tombstone_stops_an_older_start_from_resurrecting_the_peer(
        store: PeerStore) -> None:
    assert await store.apply([merged(v4(1), Event.STOPPED, T0 + 5)], T0 + 5) == 1
    assert await store.apply([merged(v4(1), Event.STARTED, T0 + 3)], T0 + 6) == 0
    assert await store.scrape([TORRENT], T0 + 6) == [SwarmStats(0, 0, 0)]
    assert await store.apply([merged(v4(1), Event.STARTED, T0 + 7)], T0 + 7) == 1
    assert await store.scrape([TORRENT], T0 + 7) == [SwarmStats(0, 1, 0)]


async def test_local_writes_carry_versions_that_merged_events_must_beat(store: PeerStore) -> None:
    await store.announce(TORRENT, v4(1), Event.STARTED, True, 0, T0 + 10,
                         version=(hlc(T0 + 10), "us", "a"))
    assert await store.apply([merged(v4(1), Event.STOPPED, T0 + 5)], T0 + 11) == 0
    assert await store.scrape([TORRENT], T0 + 11) == [SwarmStats(1, 0, 0)]
    assert await store.apply([merged(v4(1), Event.STOPPED, T0 + 12)], T0 + 12) == 1
    answer = await store.announce(TORRENT, v4(2), Event.STARTED, False, 50, T0 + 12,
                                  version=(hlc(T0 + 12), "us", "a"))
    assert answer.peers == () and answer.stats == SwarmStats(0, 1, 0)


async def test_a_local_stopped_leaves_a_tombstone(store: PeerStore) -> None:
    await store.announce(TORRENT, v4(1), Event.STARTED, False, 0, T0,
                         version=(hlc(T0), "us", "a"))
    await store.announce(TORRENT, v4(1), Event.STOPPED, False, 0, T0 + 2,
                         version=(hlc(T0 + 2), "us", "a"))
    assert await store.apply([merged(v4(1), Event.UPDATE, T0 + 1)], T0 + 3) == 0
    assert await store.scrape([TORRENT], T0 + 3) == [SwarmStats(0, 0, 0)]
    await store.announce(TORRENT, v4(1), Event.STARTED, False, 0, T0 + 4,
                         version=(hlc(T0 + 4), "us", "a"))
    assert await store.scrape([TORRENT], T0 + 4) == [SwarmStats(0, 1, 0)]


async def test_equal_clocks_are_ordered_by_region_then_node(store: PeerStore) -> None:
    def pair(info_hash: bytes) -> list[AnnounceEvent]:
        return [merged(v4(1), Event.UPDATE, T0, region="eu", seeder=True, info_hash=info_hash),
                merged(v4(1), Event.UPDATE, T0, region="eu-west", info_hash=info_hash),
                merged(v4(2), Event.UPDATE, T0, node="n1", info_hash=info_hash),
                merged(v4(2), Event.UPDATE, T0, node="n10", seeder=True, info_hash=info_hash)]
    assert await store.apply(pair(TORRENT), T0) == 4
    assert await store.apply(pair(OTHER)[::-1], T0) == 2
    # "eu-west" > "eu" and "n10" > "n1": v4(1) ends a leecher, v4(2) a seeder, either way
    assert await store.scrape([TORRENT, OTHER], T0) == [SwarmStats(1, 1, 0)] * 2


async def test_a_merged_completed_counts_once(store: PeerStore) -> None:
    done = merged(v4(1), Event.COMPLETED, T0, seeder=True)
    assert await store.apply([done], T0) == 1
    assert await store.apply([done], T0 + 1) == 0
    assert await store.scrape([TORRENT], T0 + 1) == [SwarmStats(1, 0, 1)]


async def test_a_merged_event_that_already_expired_removes_the_peer(store: PeerStore) -> None:
    await store.apply([merged(v4(1), Event.STARTED, T0)], T0)
    late = merged(v4(1), Event.UPDATE, T0 + 1, ttl=-2)  # expired before it arrived
    assert await store.apply([late], T0 + 1) == 1
    assert await store.scrape([TORRENT], T0 + 1) == [SwarmStats(0, 0, 0)]


async def test_tombstones_are_forgotten_after_tombstone_ttl(new_store: StoreFactory) -> None:
    store = await new_store()
    assert await store.apply([merged(v4(1), Event.STOPPED, T0)], T0) == 1
    old_start = merged(v4(1), Event.STARTED, T0 - 1, ttl=3 * PEER_TTL)
    assert await store.apply([old_start], T0 + 1) == 0
    await store.collect_garbage(T0 + 2 * PEER_TTL + 1)  # tombstone_ttl defaults to 2 x peer_ttl
    assert await store.apply([old_start], T0 + 2 * PEER_TTL + 1) == 1


async def test_region_flags(store: PeerStore) -> None:
    assert await store.get_flag("populated") is None
    await store.set_flag("populated", "1700000000")
    await store.set_flag("rebuilding", "1", ttl=300)
    assert await store.get_flag("populated") == "1700000000"
    assert await store.get_flag("rebuilding") == "1"
    await store.set_flag("rebuilding", None)
    assert await store.get_flag("rebuilding") is None
    await store.set_flag("rebuilding", None)
