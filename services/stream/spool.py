"""The local spool: announce events that could not go to Kafka yet, kept on disk, in order.

This module owns one spool directory and nothing else: plain file I/O, no Kafka, no event loop.
The emitter appends encoded events here while Kafka is away, and replays them when it is back.

Semantics
---------
- `append(records)` adds records at the tail, in order, and returns how many it took. The
  spool is bounded: records that would take the unconsumed bytes above `max_bytes` are refused
  (the caller counts them as lost), never half-written.
- `replay()` / `read(n)` return unconsumed records, oldest first, each with the position just
  after it. Reading consumes nothing.
- `acknowledge(position)` marks every record up to that position consumed, durably (the
  cursor file, replaced atomically). Segments that are wholly consumed are deleted; when
  everything is consumed the spool starts afresh. `acknowledge(position, requeue=records)`
  additionally puts `records` back at the head, before everything unconsumed, in the same
  step: the emitter uses it for events that Kafka definitely did not take.
- Crash safety: a record is acknowledged only after Kafka confirmed it, so a crash between
  Kafka's confirmation and the cursor write replays those records again after a restart. The
  topic may then hold a record twice. That is accepted by design: the reconciler's merge is
  idempotent (last writer wins by HLC), so a duplicate changes nothing. Nothing that was
  appended is lost by a process crash.
- A torn record (the process or machine died in the middle of a write) is detected by its
  length and CRC32, dropped with a warning naming the bytes lost, and the segment is cut back to
  its last whole record. Corruption never raises out of this module.

fsync policy (`fsync=`), the trade-off between durability and spool throughput
-----------------------------------------------------------------------------
Records are written with unbuffered `os.write`, so once `append` returns they are in the
kernel: a crash of the process (SIGKILL, OOM) loses nothing under any policy. The policy only
decides what survives a crash of the machine (kernel panic, power loss):

- `always`: `fdatasync` after every append batch (and the directory on segment creation).
  Survives machine crashes with nothing lost, but each batch waits for the disk (0.1-10 ms on
  SSDs, more on network volumes), which caps how fast an outage can be spooled.
- `interval` (default): `fdatasync` at most every `fsync_interval_ms` (default 1000 ms), when
  the owner calls `sync_if_due()` or appends. A machine crash loses at most the last interval
  of spooled events. Costs about one fsync per second while spooling, none otherwise.
- `never`: leave write-back to the kernel (about 30 s on Linux). Cheapest; a machine crash can
  lose the last half minute of spooled events.

Under every policy the cursor file is replaced atomically but not synced: after a machine crash
it may come back older, which replays acknowledged records (duplicates), never skips one.
Requeued records are synced before the cursor that points at them (except under `never`).
`sync()` may run in a worker thread (the emitter does that), so the disk wait never holds up
the event loop; `append(..., defer_sync=True)` leaves the fsync to it.

Layout of the directory
-----------------------
    lock                  flock()ed while a Spool has the directory open (one process each)
    <id:016x>.seg         segments, read in id order; appends go to the highest id
    cursor                JSON {"v": 1, "starts": {"<id>": offset}}: where reading resumes in
                          partly consumed segments (a segment not listed starts at its header)

A segment is an 8-byte header `MRDSPL\\x01\\n` followed by records, each
    u32 length | u32 crc32(length bytes + payload) | payload        (big-endian)
Requeued records get a segment with an id below every existing one, which is how they are read
first. Disk use stays below `max_bytes` plus one segment (a partly consumed head segment keeps
its consumed bytes until it is wholly consumed) plus headers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

log = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "interval", "never"]
FSYNC_POLICIES: tuple[FsyncPolicy, ...] = ("always", "interval", "never")

SEGMENT_HEADER = b"MRDSPL\x01\n"
HEADER_SIZE = len(SEGMENT_HEADER)
_FRAME = struct.Struct(">II")
FRAME_OVERHEAD = _FRAME.size
MAX_RECORD_BYTES = 1 << 20
# New spools start here; requeued records take lower ids, so there is room below.
_BASE_ID = 1 << 40
_READ_CHUNK = 256 * 1024
_SUFFIX = ".seg"


class SpoolPosition(NamedTuple):
    """Just after one record: (segment id, byte offset in that segment). Orders like replay."""

    segment: int
    offset: int


class SpooledRecord(NamedTuple):
    data: bytes
    position: SpoolPosition


class SpoolLockedError(RuntimeError):
    """Another process has this spool directory open."""


class Spool:
    """A bounded, append-only, crash-safe queue of byte records in one directory.

    One owner calls it (the emitter, from its event loop's thread). The one exception is
    `sync()`, which may run in a worker thread while the owner goes on appending, so that
    waiting for the disk never holds up the owner.
    """

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, *,
                 fsync: FsyncPolicy = "interval", fsync_interval_ms: int = 1000,
                 segment_bytes: int = 4 << 20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {FSYNC_POLICIES}, not {fsync!r}")
        if max_bytes < 1 or segment_bytes < HEADER_SIZE + FRAME_OVERHEAD + 1:
            raise ValueError("max_bytes and segment_bytes are too small")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.fsync: FsyncPolicy = fsync
        self.fsync_interval = fsync_interval_ms / 1000
        self.segment_bytes = segment_bytes
        self._clock = clock
        # Bytes cut off torn or corrupt records since the spool was opened (they are lost).
        self.dropped_bytes = 0
        self._sizes: dict[int, int] = {}   # segment id -> bytes on disk
        self._starts: dict[int, int] = {}  # segment id -> where unconsumed records begin
        self._pending = 0
        self._tail_fd: int | None = None
        self._tail_id: int | None = None
        # Durability bookkeeping, shared with a `sync()` running in another thread.
        self._sync_lock = threading.Lock()
        self._written = 0          # generation: bumped by every write to the tail
        self._synced = 0           # the generation the last completed sync covered
        self._unsynced: list[Path] = []   # rotated-out segments with writes not yet synced
        self._last_sync = clock()
        self._closed = False
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolLockedError(
                f"spool directory {self.directory} is in use by another process; give every "
                "process a spool directory of its own") from None
        try:
            self._load()
        except BaseException:
            os.close(self._lock_fd)
            raise

    # -- state ------------------------------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        """Bytes of unconsumed records, frames included (what `max_bytes` bounds)."""
        return self._pending

    @property
    def empty(self) -> bool:
        return self._pending == 0

    @property
    def disk_bytes(self) -> int:
        return sum(self._sizes.values())

    def _start(self, segment: int) -> int:
        return self._starts.get(segment, HEADER_SIZE)

    def _recount(self) -> None:
        self._pending = sum(size - self._start(seg) for seg, size in self._sizes.items())

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:016x}{_SUFFIX}"

    # -- opening ----------------------------------------------------------------------------

    def _load(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / "cursor.tmp").unlink()
        for path in sorted(self.directory.glob("*" + _SUFFIX)):
            try:
                segment = int(path.stem, 16)
            except ValueError:
                log.warning("spool: ignoring %s (not a segment name)", path)
                continue
            with open(path, "rb") as f:
                header = f.read(HEADER_SIZE)
            size = path.stat().st_size
            if len(header) < HEADER_SIZE and SEGMENT_HEADER.startswith(header):
                log.warning("spool: removing %s, a segment torn while it was created", path)
                path.unlink()
                continue
            if header != SEGMENT_HEADER:
                log.error("spool: %s is not a spool segment (bad header); moved aside to "
                          "%s.corrupt, its %d bytes are not replayed", path, path.name, size)
                path.rename(path.with_name(path.name + ".corrupt"))
                self.dropped_bytes += size
                continue
            self._sizes[segment] = size
        self._starts = self._read_cursor()
        if self._sizes:
            tail = max(self._sizes)
            self._check_tail(tail)
            self._tail_id = tail
            self._tail_fd = os.open(self._path(tail), os.O_WRONLY | os.O_APPEND)
        self._recount()
        self._forget_consumed()

    def _read_cursor(self) -> dict[int, int]:
        path = self.directory / "cursor"
        try:
            raw = json.loads(path.read_text())
            starts = {int(k, 16): int(v) for k, v in raw["starts"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("spool: unreadable cursor file %s (%s); replaying every segment from "
                        "its start (events may be sent twice, none is lost)", path, exc)
            return {}
        clean = {}
        for segment, offset in starts.items():
            if segment in self._sizes:
                clean[segment] = max(HEADER_SIZE, min(offset, self._sizes[segment]))
        return clean

    def _check_tail(self, segment: int) -> None:
        """Walk the newest segment's records; cut a torn last record off."""
        position = SpoolPosition(segment, self._start(segment))
        while True:
            batch = self._read_segment(segment, position.offset, 4096, _READ_CHUNK)
            if not batch:
                return
            position = batch[-1].position

    def _forget_consumed(self) -> None:
        """Delete wholly consumed segments (the tail stays: appends go there)."""
        for segment in sorted(self._sizes):
            if segment != self._tail_id and self._start(segment) >= self._sizes[segment]:
                self._unlink(segment)
        if self._pending == 0 and self._sizes:
            self._reset()

    # -- appending --------------------------------------------------------------------------

    def append(self, records: Sequence[bytes], *, defer_sync: bool = False) -> int:
        """Append records in order; returns how many were taken.

        Stops at the first record that does not fit under `max_bytes` (or is over 1 MiB, or
        cannot be written): that one and all after it are refused, and the caller counts them.
        With `defer_sync`, the fsync the policy asks for is left to the next `sync_if_due()`
        (for callers that must not wait for the disk).
        """
        self._check_open()
        taken = 0
        buffer = bytearray()
        in_buffer = 0
        for record in records:
            frame = FRAME_OVERHEAD + len(record)
            if (len(record) > MAX_RECORD_BYTES
                    or self._pending + len(buffer) + frame > self.max_bytes):
                break
            tail_size = self._sizes.get(self._tail_id, 0) if self._tail_id is not None else 0
            if self._tail_id is None or (tail_size + len(buffer) + frame > self.segment_bytes
                                         and tail_size + len(buffer) > HEADER_SIZE):
                if buffer and not self._write_tail(buffer):
                    return taken
                taken += in_buffer
                buffer, in_buffer = bytearray(), 0
                if not self._rotate():
                    return taken
            buffer += _frame(record)
            in_buffer += 1
        if buffer and self._write_tail(buffer):
            taken += in_buffer
        if taken and not defer_sync:
            self._sync_by_policy()
        return taken

    def _write_tail(self, data: bytes | bytearray) -> bool:
        assert self._tail_fd is not None and self._tail_id is not None
        before = self._sizes[self._tail_id]
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._tail_fd, view)
                view = view[written:]
        except OSError as exc:
            log.error("spool: cannot write to %s (%s); %d bytes of events not spooled",
                      self._path(self._tail_id), exc, len(data))
            with contextlib.suppress(OSError):
                os.ftruncate(self._tail_fd, before)
            return False
        self._sizes[self._tail_id] = before + len(data)
        self._pending += len(data)
        with self._sync_lock:
            self._written += 1
        return True

    def _rotate(self) -> bool:
        """Start a new tail segment after the newest one."""
        if self._tail_fd is not None and self._tail_id is not None:
            with self._sync_lock:
                if self._written != self._synced and self.fsync != "never":
                    self._unsynced.append(self._path(self._tail_id))
                os.close(self._tail_fd)
                self._tail_fd = None
        segment = max(self._sizes) + 1 if self._sizes else _BASE_ID
        fd = self._create_segment(segment, b"")
        with self._sync_lock:
            if fd is None:
                self._tail_id = max(self._sizes) if self._sizes else None
                if self._tail_id is not None:
                    self._tail_fd = os.open(self._path(self._tail_id),
                                            os.O_WRONLY | os.O_APPEND)
                return False
            self._tail_fd, self._tail_id = fd, segment
        return True

    def _create_segment(self, segment: int, body: bytes | bytearray) -> int | None:
        """A new segment file holding `body`; its write fd, or None when the disk refused."""
        path = self._path(segment)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except OSError as exc:
            log.error("spool: cannot create %s (%s)", path, exc)
            return None
        try:
            data = memoryview(SEGMENT_HEADER + body)
            while data:
                data = data[os.write(fd, data):]
            if self.fsync == "always" or (body and self.fsync == "interval"):
                os.fdatasync(fd)
            if self.fsync == "always":
                self._sync_directory()
        except OSError as exc:
            log.error("spool: cannot write %s (%s)", path, exc)
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        self._sizes[segment] = HEADER_SIZE + len(body)
        self._pending += len(body)
        return fd

    # -- reading ----------------------------------------------------------------------------

    def read(self, max_records: int, max_bytes: int = _READ_CHUNK,
             after: SpoolPosition | None = None) -> list[SpooledRecord]:
        """Up to `max_records` unconsumed records (about `max_bytes` of them), oldest first,
        starting after `after` (default: at the oldest unconsumed record). Consumes nothing."""
        self._check_open()
        out: list[SpooledRecord] = []
        for segment in sorted(self._sizes):
            if after is not None and segment < after.segment:
                continue
            offset = (after.offset if after is not None and segment == after.segment
                      else self._start(segment))
            offset = max(offset, self._start(segment))
            out += self._read_segment(segment, offset, max_records - len(out),
                                      max_bytes - sum(len(r.data) for r in out))
            if len(out) >= max_records or sum(len(r.data) for r in out) >= max_bytes:
                break
        return out

    def replay(self) -> Iterator[SpooledRecord]:
        """Every unconsumed record, oldest first (also those appended while iterating)."""
        after: SpoolPosition | None = None
        while True:
            batch = self.read(1024, _READ_CHUNK, after)
            if not batch:
                return
            yield from batch
            after = batch[-1].position

    def _read_segment(self, segment: int, offset: int, max_records: int,
                      max_bytes: int) -> list[SpooledRecord]:
        out: list[SpooledRecord] = []
        size = self._sizes.get(segment)
        if size is None or offset >= size or max_records <= 0:
            return out
        path = self._path(segment)
        taken_bytes = 0
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                base, data = offset, f.read(min(size - offset, max(max_bytes, _FRAME.size)))
                here = offset
                while len(out) < max_records and here < size and taken_bytes < max_bytes:
                    if here + _FRAME.size > size:
                        self._drop_suffix(segment, here, "torn record header")
                        break
                    if here + _FRAME.size > base + len(data):
                        if out:
                            break
                        f.seek(here)
                        base, data = here, f.read(min(size - here, _READ_CHUNK))
                        if len(data) < _FRAME.size:
                            self._drop_suffix(segment, here, "segment shorter than recorded")
                            break
                    length, crc = _FRAME.unpack_from(data, here - base)
                    end = here + _FRAME.size + length
                    if length > MAX_RECORD_BYTES or end > size:
                        self._drop_suffix(segment, here, f"torn record (length {length})")
                        break
                    if end > base + len(data):
                        if out:
                            break
                        f.seek(here)
                        base, data = here, f.read(end - here)
                        if len(data) < end - here:
                            self._drop_suffix(segment, here, "segment shorter than recorded")
                            break
                    start = here - base + _FRAME.size
                    payload = bytes(data[start : start + length])
                    if zlib.crc32(payload, zlib.crc32(data[here - base : here - base + 4])) != crc:
                        self._drop_suffix(segment, here, "checksum mismatch")
                        break
                    out.append(SpooledRecord(payload, SpoolPosition(segment, end)))
                    taken_bytes += length
                    here = end
        except OSError as exc:
            log.error("spool: cannot read %s (%s); skipping the rest of it", path, exc)
            self._drop_suffix(segment, offset, f"unreadable: {exc}", truncate=False)
        return out

    def _drop_suffix(self, segment: int, offset: int, reason: str, *,
                     truncate: bool = True) -> None:
        """Cut a segment back to `offset`: what follows is torn or corrupt, and lost."""
        size = self._sizes[segment]
        lost = size - offset
        log.warning("spool: dropped %d bytes of %s from offset %d: %s (a write torn by a crash "
                    "or a damaged disk); the events in them are lost", lost,
                    self._path(segment), offset, reason)
        self.dropped_bytes += lost
        if truncate:
            try:
                os.truncate(self._path(segment), offset)
            except OSError as exc:
                log.error("spool: cannot truncate %s (%s)", self._path(segment), exc)
        self._sizes[segment] = offset
        if self._start(segment) > offset:
            self._starts[segment] = offset
        self._recount()

    # -- consuming --------------------------------------------------------------------------

    def acknowledge(self, through: SpoolPosition | None,
                    requeue: Sequence[bytes] = ()) -> int:
        """Mark every record up to `through` consumed, and put `requeue` (if any) back at the
        head, before all unconsumed records, in one durable step. Returns how many of
        `requeue` fit under `max_bytes` (the rest are refused, like `append`)."""
        self._check_open()
        starts = dict(self._starts)
        gone: list[int] = []
        if through is not None:
            for segment in self._sizes:
                if segment < through.segment:
                    starts[segment] = self._sizes[segment]
                    gone.append(segment)
                elif segment == through.segment:
                    starts[segment] = max(self._start(segment),
                                          min(through.offset, self._sizes[segment]))
                    if segment != self._tail_id and starts[segment] >= self._sizes[segment]:
                        gone.append(segment)
        pending_after = sum(size - starts.get(seg, HEADER_SIZE)
                            for seg, size in self._sizes.items())
        taken = 0
        if requeue:
            body = bytearray()
            for record in requeue:
                frame = FRAME_OVERHEAD + len(record)
                if (len(record) > MAX_RECORD_BYTES
                        or pending_after + len(body) + frame > self.max_bytes):
                    break
                body += _frame(record)
                taken += 1
            if taken:
                # Below every segment still on disk (those about to go included), so it is
                # read first and never collides with one.
                segment = min(self._sizes) - 1 if self._sizes else _BASE_ID
                fd = self._create_segment(segment, body)
                if fd is None:
                    taken = 0
                elif self._tail_id is None:
                    with self._sync_lock:
                        self._tail_fd, self._tail_id = fd, segment
                else:
                    os.close(fd)
        self._starts = {seg: off for seg, off in starts.items()
                        if seg in self._sizes and off > HEADER_SIZE}
        self._write_cursor()
        for segment in gone:
            self._unlink(segment)
        self._starts = {seg: off for seg, off in self._starts.items() if seg in self._sizes}
        self._recount()
        if self._pending == 0 and self._sizes:
            self._reset()
        return taken

    def _unlink(self, segment: int) -> None:
        if segment == self._tail_id:
            with self._sync_lock:
                if self._tail_fd is not None:
                    os.close(self._tail_fd)
                self._tail_fd, self._tail_id = None, None
        with contextlib.suppress(FileNotFoundError):
            self._path(segment).unlink()
        self._sizes.pop(segment, None)
        self._starts.pop(segment, None)

    def _reset(self) -> None:
        """Everything is consumed: remove every segment and the cursor, start afresh."""
        for segment in list(self._sizes):
            self._unlink(segment)
        with contextlib.suppress(FileNotFoundError):
            (self.directory / "cursor").unlink()
        self._starts = {}
        self._pending = 0
        with self._sync_lock:
            self._synced = self._written   # nothing left that needs to reach the disk
            self._unsynced = []

    def _write_cursor(self) -> None:
        path = self.directory / "cursor"
        tmp = self.directory / "cursor.tmp"
        data = json.dumps({"v": 1, "starts": {f"{seg:016x}": off
                                               for seg, off in sorted(self._starts.items())}})
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, data.encode())
            finally:
                os.close(fd)
            # Not synced under any policy: a cursor that comes back older after a machine
            # crash replays acknowledged records (duplicates), it never skips any.
            os.replace(tmp, path)
        except OSError as exc:
            # The previous cursor stays: those records are replayed again (duplicates only).
            log.error("spool: cannot write the cursor %s (%s); acknowledged events may be "
                      "sent again", path, exc)

    # -- durability -------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """Written since the last sync."""
        with self._sync_lock:
            return self._written != self._synced or bool(self._unsynced)

    def sync_due(self) -> bool:
        """Whether the policy wants a `sync()` now (for appends made with `defer_sync`)."""
        if self.fsync == "never" or not self.dirty:
            return False
        return (self.fsync == "always"
                or self._clock() - self._last_sync >= self.fsync_interval)

    def sync(self) -> None:
        """fdatasync what was written so far (a no-op under `never`).

        Safe to run in a worker thread while the owner keeps appending: it syncs a duplicate of
        the tail's descriptor, so a concurrent rotation or close cannot pull it away.
        """
        if self.fsync == "never" or not self.dirty:
            return
        with self._sync_lock:
            generation = self._written
            paths, self._unsynced = self._unsynced, []
            fd = os.dup(self._tail_fd) if self._tail_fd is not None else None
        try:
            for path in paths:
                try:
                    rotated = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    continue  # consumed and deleted meanwhile
                try:
                    os.fdatasync(rotated)
                finally:
                    os.close(rotated)
            if fd is not None:
                os.fdatasync(fd)
        except OSError as exc:
            log.error("spool: fdatasync in %s failed (%s); spooled events may not survive a "
                      "machine crash", self.directory, exc)
        finally:
            if fd is not None:
                os.close(fd)
        with self._sync_lock:
            self._synced = max(self._synced, generation)
            self._last_sync = self._clock()

    def sync_if_due(self) -> None:
        if self.sync_due():
            self.sync()

    def _sync_by_policy(self) -> None:
        self.sync_if_due()

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"spool {self.directory} is closed")

    def close(self) -> None:
        """Sync (per the policy), close the files and release the directory's lock."""
        if self._closed:
            return
        self.sync()
        with self._sync_lock:
            if self._tail_fd is not None:
                os.close(self._tail_fd)
                self._tail_fd = None
        self._closed = True
        os.close(self._lock_fd)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _frame(record: bytes) -> bytes:
    length = struct.pack(">I", len(record))
    return length + struct.pack(">I", zlib.crc32(record, zlib.crc32(length))) + record
