"""bencode: round trips under hypothesis, agreement with an independent package, strictness."""

from __future__ import annotations

import bencodepy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core import bencode
from services.core.errors import BencodeError, TrackerBug

independent = bencodepy.Bencode(encoding=None)

values = st.recursive(
    st.integers(min_value=-(2**70), max_value=2**70) | st.binary(max_size=64),
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.binary(max_size=12), children, max_size=6),
    max_leaves=30,
)


@given(values)
def test_round_trip(value: bencode.Value) -> None:
    assert bencode.decode(bencode.encode(value)) == value


@given(values)
def test_encoding_agrees_with_independent_package(value: bencode.Value) -> None:
    encoded = bencode.encode(value)
    assert independent.encode(value) == encoded
    assert independent.decode(encoded) == value


@given(values)
def test_every_strict_prefix_is_refused(value: bencode.Value) -> None:
    encoded = bencode.encode(value)
    for cut in range(len(encoded)):
        with pytest.raises(BencodeError):
            bencode.decode(encoded[:cut])


@settings(max_examples=300)
@given(st.binary(max_size=40))
def test_arbitrary_bytes_decode_or_raise_bencode_error(data: bytes) -> None:
    try:
        value = bencode.decode(data)
    except BencodeError:
        return
    assert bencode.encode(value) == data  # accepted input is canonical


@pytest.mark.parametrize(
    "data, why",
    [
        (b"i03e", "leading zero"),
        (b"i-0e", "negative zero"),
        (b"ie", "empty integer"),
        (b"i1", "unterminated integer"),
        (b"i1.5e", "not an integer"),
        (b"03:abc", "leading zero in length"),
        (b"5:abc", "string past end"),
        (b"d1:bi1e1:ai2ee", "unsorted keys"),
        (b"d1:ai1e1:ai2ee", "repeated key"),
        (b"di1ei2ee", "integer key"),
        (b"l" * 40 + b"e" * 40, "too deep"),
        (b"i1ei2e", "trailing data"),
        (b"x", "unknown type"),
        (b"", "empty"),
    ],
)
def test_non_canonical_or_hostile_input_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(BencodeError):
        bencode.decode(data)


def test_size_bound() -> None:
    data = bencode.encode(b"x" * 1000)
    assert bencode.decode(data, max_size=2000) == b"x" * 1000
    with pytest.raises(BencodeError, match="limit"):
        bencode.decode(data, max_size=500)


def test_encoder_refuses_what_bencode_cannot_say() -> None:
    for bad in (True, 1.5, None, {1: b"x"}):
        with pytest.raises(TrackerBug):
            bencode.encode(bad)  # type: ignore[arg-type]


def test_str_keys_sort_as_bytes() -> None:
    assert bencode.encode({"b": 1, "a": "é"}) == b"d1:a2:\xc3\xa91:bi1ee"
