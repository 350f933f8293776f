"""hypothesis strategies for the tracker's values, shared by the codec tests."""

from __future__ import annotations

from hypothesis import strategies as st

from services.core.model import AnnounceRequest, Event, Peer, SwarmStats

info_hashes = st.binary(min_size=20, max_size=20)
peer_ids = st.binary(min_size=20, max_size=20)
ports = st.integers(min_value=1, max_value=65535)
counters = st.integers(min_value=0, max_value=2**63 - 1)
ipv4 = st.binary(min_size=4, max_size=4)
ipv6 = st.binary(min_size=16, max_size=16).filter(lambda b: not b.startswith(bytes(10) + b"\xff\xff"))
peers = st.builds(Peer, ip=ipv4 | ipv6, port=ports, peer_id=peer_ids)
stats = st.builds(SwarmStats, *(st.integers(min_value=0, max_value=2**31 - 1),) * 3)


@st.composite
def http_announces(draw: st.DrawFn) -> AnnounceRequest:
    return AnnounceRequest(
        info_hash=draw(info_hashes), peer_id=draw(peer_ids), port=draw(ports),
        uploaded=draw(counters), downloaded=draw(counters),
        left=draw(st.none() | counters),
        event=draw(st.sampled_from(list(Event))),
        numwant=draw(st.none() | st.integers(min_value=0, max_value=2**31 - 1)),
        compact=draw(st.booleans()), no_peer_id=draw(st.booleans()),
        key=draw(st.none() | st.binary(min_size=1, max_size=16)),
    )


@st.composite
def udp_announces(draw: st.DrawFn) -> AnnounceRequest:
    return AnnounceRequest(
        info_hash=draw(info_hashes), peer_id=draw(peer_ids), port=draw(ports),
        uploaded=draw(st.integers(0, 2**64 - 1)), downloaded=draw(st.integers(0, 2**64 - 1)),
        left=draw(st.integers(0, 2**64 - 1)),
        event=draw(st.sampled_from(list(Event))),
        numwant=draw(st.none() | st.integers(min_value=0, max_value=2**31 - 1)),
        key=draw(st.binary(min_size=4, max_size=4)),
        url_data=draw(st.binary(max_size=600)),
    )
