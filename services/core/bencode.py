"""Strict, bounded bencode (BEP 3).

The decoder accepts exactly one canonical encoding of each value: integers without leading zeros
or `-0`, byte-string lengths without leading zeros, dictionary keys as byte strings in strictly
ascending order. It refuses input over `max_size` bytes or nested deeper than `max_depth`, so a
hostile peer cannot make it allocate or recurse without bound. Strings decode to `bytes`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Union

from .errors import BencodeError, TrackerBug

Value = Union[int, bytes, list["Value"], dict[bytes, "Value"]]
Encodable = Union[
    int, bytes, str, Sequence["Encodable"],
    Mapping[bytes, "Encodable"], Mapping[str, "Encodable"], Mapping[Union[bytes, str], "Encodable"],
]

DEFAULT_MAX_SIZE = 1 << 20
DEFAULT_MAX_DEPTH = 32
_DIGITS = b"0123456789"


def encode(value: Encodable) -> bytes:
    """Encode a value; dictionary keys are sorted as raw bytes, as BEP 3 requires."""
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: Encodable, out: list[bytes]) -> None:
    if isinstance(value, bool):
        raise TrackerBug("bencode has no booleans; encode 0 or 1 explicitly")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, bytes):
        out.append(b"%d:" % len(value))
        out.append(value)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, (list, tuple)):  # bytes and str are Sequences too: handled above
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, Mapping):
        items = sorted(
            ((k.encode("utf-8") if isinstance(k, str) else k, v) for k, v in value.items()),
            key=lambda kv: kv[0],
        )
        out.append(b"d")
        previous: bytes | None = None
        for key, item in items:
            if not isinstance(key, bytes):
                raise TrackerBug(f"bencode dictionary key must be bytes or str, not {type(key).__name__}")
            if key == previous:
                raise TrackerBug(f"duplicate bencode dictionary key {key!r}")
            previous = key
            out.append(b"%d:" % len(key))
            out.append(key)
            _encode(item, out)
        out.append(b"e")
    else:
        raise TrackerBug(f"cannot bencode {type(value).__name__}")


def decode(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE, max_depth: int = DEFAULT_MAX_DEPTH) -> Value:
    """Decode exactly one value that fills `data`; raise `BencodeError` on anything else."""
    if len(data) > max_size:
        raise BencodeError(f"bencode input of {len(data)} bytes is over the {max_size}-byte limit")
    if not data:
        raise BencodeError("empty bencode input")
    value, end = _Decoder(data, max_depth).value(0, 0)
    if end != len(data):
        raise BencodeError(f"trailing data after bencode value at offset {end}")
    return value


class _Decoder:
    __slots__ = ("data", "max_depth")

    def __init__(self, data: bytes, max_depth: int) -> None:
        self.data = data
        self.max_depth = max_depth

    def value(self, pos: int, depth: int) -> tuple[Value, int]:
        data = self.data
        if pos >= len(data):
            raise BencodeError("bencode input ends early")
        lead = data[pos]
        if lead == 0x69:  # i
            return self.integer(pos)
        if lead in _DIGITS:
            return self.string(pos)
        if depth >= self.max_depth:
            raise BencodeError(f"bencode nested deeper than {self.max_depth}")
        if lead == 0x6C:  # l
            items: list[Value] = []
            pos += 1
            while True:
                if pos >= len(data):
                    raise BencodeError("bencode list is not terminated")
                if data[pos] == 0x65:  # e
                    return items, pos + 1
                item, pos = self.value(pos, depth + 1)
                items.append(item)
        if lead == 0x64:  # d
            result: dict[bytes, Value] = {}
            pos += 1
            previous: bytes | None = None
            while True:
                if pos >= len(data):
                    raise BencodeError("bencode dictionary is not terminated")
                if data[pos] == 0x65:
                    return result, pos + 1
                if data[pos] not in _DIGITS:
                    raise BencodeError(f"bencode dictionary key at offset {pos} is not a string")
                key, pos = self.string(pos)
                if previous is not None and key <= previous:
                    raise BencodeError(f"bencode dictionary keys unsorted or repeated at {key!r}")
                previous = key
                result[key], pos = self.value(pos, depth + 1)
        raise BencodeError(f"unexpected byte {lead:#04x} at offset {pos}")

    def integer(self, pos: int) -> tuple[int, int]:
        data = self.data
        end = data.find(b"e", pos + 1)
        if end < 0:
            raise BencodeError("bencode integer is not terminated")
        digits = data[pos + 1 : end]
        body = digits[1:] if digits[:1] == b"-" else digits
        if not body or any(c not in _DIGITS for c in body):
            raise BencodeError(f"bencode integer {digits!r} is not a number")
        if (len(body) > 1 and body[0] == 0x30) or digits == b"-0":
            raise BencodeError(f"bencode integer {digits!r} is not canonical")
        if len(body) > 64:
            raise BencodeError("bencode integer is too long")
        return int(digits), end + 1

    def string(self, pos: int) -> tuple[bytes, int]:
        data = self.data
        colon = data.find(b":", pos)
        if colon < 0 or colon - pos > 20:
            raise BencodeError(f"bencode string length at offset {pos} is malformed")
        digits = data[pos:colon]
        if any(c not in _DIGITS for c in digits) or (len(digits) > 1 and digits[0] == 0x30):
            raise BencodeError(f"bencode string length {digits!r} is malformed")
        length = int(digits)
        start = colon + 1
        if start + length > len(data):
            raise BencodeError("bencode string runs past the end of the input")
        return data[start : start + length], start + length
