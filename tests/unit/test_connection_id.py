"""UDP connection ids: shared across nodes, bound to the client IP, valid for one or two windows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.connection_id import ConnectionIds

SECRET = b"shared-secret-of-every-node-0001"
IP4 = bytes([192, 0, 2, 7])
IP6 = bytes(15) + b"\x01"


def test_another_node_with_the_same_secret_accepts_the_id() -> None:
    issued = ConnectionIds(SECRET, 120).issue(IP4, 1_000.0)
    assert ConnectionIds(SECRET, 120).valid(issued, IP4, 1_000.0)


def test_a_node_with_another_secret_refuses_it() -> None:
    issued = ConnectionIds(SECRET, 120).issue(IP4, 1_000.0)
    assert not ConnectionIds(b"another-secret-entirely-00000000", 120).valid(issued, IP4, 1_000.0)


def test_the_id_is_bound_to_the_client_ip() -> None:
    ids = ConnectionIds(SECRET, 120)
    assert not ids.valid(ids.issue(IP4, 50.0), bytes([192, 0, 2, 8]), 50.0)
    assert not ids.valid(ids.issue(IP6, 50.0), IP4, 50.0)


@given(st.floats(min_value=0, max_value=2**40), st.floats(min_value=0, max_value=400))
def test_windows(issued_at: float, age: float) -> None:
    """Valid through the end of the next window, never later: life is 1 to 2 lifetimes."""
    lifetime = 120.0
    ids = ConnectionIds(SECRET, lifetime)
    cid = ids.issue(IP4, issued_at)
    window_end = (issued_at // lifetime + 2) * lifetime
    now = issued_at + age
    if age < lifetime:
        assert ids.valid(cid, IP4, now)
    if now >= window_end:
        assert not ids.valid(cid, IP4, now)


def test_forged_ids_are_refused() -> None:
    ids = ConnectionIds(SECRET, 120)
    assert not ids.valid(b"\x00" * 8, IP4, 10.0)
    assert not ids.valid(ids.issue(IP4, 10.0)[:7] + b"\x00", IP4, 10.0) or \
        ids.issue(IP4, 10.0)[7] == 0


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        ConnectionIds(b"short", 120)
