"""The spool on its own: plain files in a temporary directory, no Kafka.

Round trips, the size bound, torn and corrupt records, reopening after a restart, requeueing at
the head, segment rotation, the fsync policies, and a model-based property test.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.stream.spool import (
    FRAME_OVERHEAD,
    HEADER_SIZE,
    Spool,
    SpoolLockedError,
    SpoolPosition,
)


def records(n: int, size: int = 20, tag: bytes = b"r") -> list[bytes]:
    return [tag + i.to_bytes(4, "big") + bytes(size) for i in range(n)]


def contents(spool: Spool) -> list[bytes]:
    return [r.data for r in spool.replay()]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def spool(directory: Path) -> Iterator[Spool]:
    with Spool(directory, 1 << 20) as opened:
        yield opened


def test_round_trip_in_order(spool: Spool) -> None:
    data = [b"", b"x", bytes(range(256)) * 40, *records(50)]
    assert spool.append(data) == len(data)
    got = list(spool.replay())
    assert [r.data for r in got] == data
    positions = [r.position for r in got]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert spool.pending_bytes == sum(FRAME_OVERHEAD + len(d) for d in data)
    assert spool.read(3) == got[:3]
    assert spool.read(100, after=got[10].position) == got[11:]


def test_acknowledge_consumes_and_an_empty_spool_leaves_no_segment(spool: Spool,
                                                                   directory: Path) -> None:
    data = records(10)
    spool.append(data)
    got = spool.read(4)
    spool.acknowledge(got[-1].position)
    assert contents(spool) == data[4:]
    spool.acknowledge(list(spool.replay())[-1].position)
    assert spool.empty and spool.pending_bytes == 0
    assert segments(directory) == [] and not (directory / "cursor").exists()
    spool.append([b"again"])
    assert contents(spool) == [b"again"]


def test_bound_refuses_what_does_not_fit_and_frees_room_when_consumed(directory: Path) -> None:
    frame = FRAME_OVERHEAD + len(records(1)[0])
    with Spool(directory, max_bytes=10 * frame) as spool:
        assert spool.append(records(4)) == 4
        assert spool.append(records(10, tag=b"s")) == 6  # 4 of them did not fit
        assert spool.pending_bytes == 10 * frame
        assert spool.append([b"one more"]) == 0
        spool.acknowledge(spool.read(5)[-1].position)
        assert spool.append(records(7, tag=b"t")) == 5
        assert spool.pending_bytes <= spool.max_bytes
        assert len(contents(spool)) == 10


def test_torn_tail_is_dropped_with_a_log_line_and_appends_go_on(
        directory: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = records(5)
    with Spool(directory, 1 << 20) as spool:
        spool.append(data)
    [tail] = segments(directory)
    whole = tail.stat().st_size
    with open(tail, "ab") as f:  # a record whose write was cut short by a crash
        f.write((100).to_bytes(4, "big") + b"\0\0\0\0" + b"partial")
    with caplog.at_level(logging.WARNING, logger="services.stream.spool"):
        with Spool(directory, 1 << 20) as spool:
            assert contents(spool) == data
            assert tail.stat().st_size == whole
            assert spool.dropped_bytes == 15
            spool.append([b"after"])
            assert contents(spool) == [*data, b"after"]
    assert "dropped 15 bytes" in caplog.text


@pytest.mark.parametrize("cut", [1, 3, FRAME_OVERHEAD, FRAME_OVERHEAD + 5])
def test_a_record_cut_anywhere_leaves_the_whole_ones(directory: Path, cut: int) -> None:
    data = records(3)
    with Spool(directory, 1 << 20) as spool:
        spool.append(data)
        spool.append([b"the last one, torn"])
    [tail] = segments(directory)
    size = tail.stat().st_size
    os.truncate(tail, size - (FRAME_OVERHEAD + 18) + cut)
    with Spool(directory, 1 << 20) as spool:
        assert contents(spool) == data


def test_a_corrupt_record_drops_the_rest_of_its_segment_and_never_raises(
        directory: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = records(6)
    with Spool(directory, 1 << 20) as spool:
        spool.append(data)
    [tail] = segments(directory)
    offset = HEADER_SIZE + 3 * (FRAME_OVERHEAD + len(data[0])) + FRAME_OVERHEAD + 2
    with open(tail, "r+b") as f:  # flip one payload byte of the fourth record
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes((byte[0] ^ 0xFF,)))
    with caplog.at_level(logging.WARNING, logger="services.stream.spool"):
        with Spool(directory, 1 << 20) as spool:
            assert contents(spool) == data[:3]
    assert "checksum mismatch" in caplog.text


def test_reopen_resumes_at_the_cursor_and_unacknowledged_records_come_again(
        directory: Path) -> None:
    data = records(20)
    with Spool(directory, 1 << 20) as spool:
        spool.append(data)
        spool.acknowledge(spool.read(5)[-1].position)
        spool.read(5)  # read, sent perhaps, but not acknowledged: the "crash" comes first
    with Spool(directory, 1 << 20) as spool:
        assert contents(spool) == data[5:]  # duplicates possible, loss never
        spool.acknowledge(spool.read(10)[-1].position)
    with Spool(directory, 1 << 20) as spool:
        assert contents(spool) == data[15:]


def test_requeue_goes_before_everything_unconsumed_and_survives_a_restart(
        directory: Path) -> None:
    data = records(10)
    with Spool(directory, 1 << 20, segment_bytes=200) as spool:
        spool.append(data)
        batch = spool.read(4)
        failed = [batch[1].data, batch[3].data]
        assert spool.acknowledge(batch[-1].position, requeue=failed) == 2
        assert contents(spool) == failed + data[4:]
        assert spool.acknowledge(None, requeue=[b"older still"]) == 1
        assert contents(spool) == [b"older still", *failed, *data[4:]]
    with Spool(directory, 1 << 20, segment_bytes=200) as spool:
        assert contents(spool) == [b"older still", *failed, *data[4:]]
        spool.append([b"newest"])
        assert contents(spool)[-1] == b"newest"


def test_requeue_into_an_empty_spool_then_append(spool: Spool) -> None:
    assert spool.acknowledge(None, requeue=[b"a", b"b"]) == 2
    spool.append([b"c"])
    assert contents(spool) == [b"a", b"b", b"c"]


def test_segments_rotate_and_consumed_ones_are_deleted(directory: Path) -> None:
    data = records(40)
    with Spool(directory, 1 << 20, segment_bytes=256) as spool:
        spool.append(data[:20])
        spool.append(data[20:])
        assert len(segments(directory)) >= 4
        assert contents(spool) == data
        got = spool.read(25)
        before = len(segments(directory))
        spool.acknowledge(got[-1].position)
        assert len(segments(directory)) < before
        assert contents(spool) == data[25:]
        assert spool.disk_bytes <= spool.pending_bytes + 256 + HEADER_SIZE * 2


def test_a_second_process_cannot_open_the_same_directory(spool: Spool, directory: Path) -> None:
    with pytest.raises(SpoolLockedError, match="in use by another process"):
        Spool(directory, 1 << 20)


def test_an_unreadable_cursor_replays_everything(directory: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    data = records(6)
    with Spool(directory, 1 << 20) as spool:
        spool.append(data)
        spool.acknowledge(spool.read(2)[-1].position)
    (directory / "cursor").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="services.stream.spool"):
        with Spool(directory, 1 << 20) as spool:
            assert contents(spool) == data
    assert "unreadable cursor" in caplog.text


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fdatasyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    return calls


def test_fsync_always_syncs_every_append_batch(directory: Path, fdatasyncs: list[int]) -> None:
    with Spool(directory, 1 << 20, fsync="always") as spool:
        spool.append([b"creates the segment (synced too)"])
        fdatasyncs.clear()
        for _ in range(3):
            spool.append(records(5))
        assert len(fdatasyncs) == 3
        spool.append(records(1), defer_sync=True)
        assert spool.sync_due()
        spool.sync_if_due()
        assert len(fdatasyncs) == 4 and not spool.sync_due()


def test_fsync_interval_syncs_at_most_once_per_interval(directory: Path,
                                                        fdatasyncs: list[int]) -> None:
    clock = Clock()
    with Spool(directory, 1 << 20, fsync="interval", fsync_interval_ms=1000,
               clock=clock) as spool:
        fdatasyncs.clear()
        spool.append(records(5))
        spool.append(records(5))
        assert fdatasyncs == [] and not spool.sync_due()
        clock.now = 1.5
        assert spool.sync_due()
        spool.append(records(1))
        assert len(fdatasyncs) == 1
        spool.append(records(1))
        assert len(fdatasyncs) == 1  # not due again before 2.5 s
        clock.now = 2.6
        spool.sync_if_due()
        assert len(fdatasyncs) == 2


def test_fsync_never_leaves_it_to_the_kernel(directory: Path, fdatasyncs: list[int]) -> None:
    with Spool(directory, 1 << 20, fsync="never", segment_bytes=128) as spool:
        spool.append(records(30))
        spool.sync()
        assert not spool.sync_due()
    assert fdatasyncs == []


def test_sync_in_a_worker_thread_while_appending(directory: Path) -> None:
    with Spool(directory, 1 << 20, fsync="always", segment_bytes=512) as spool:
        stop = threading.Event()

        def syncing() -> None:
            while not stop.is_set():
                spool.sync()

        worker = threading.Thread(target=syncing)
        worker.start()
        try:
            for i in range(300):
                spool.append([i.to_bytes(4, "big")], defer_sync=True)
        finally:
            stop.set()
            worker.join()
        assert contents(spool) == [i.to_bytes(4, "big") for i in range(300)]


def test_bad_settings_are_refused(directory: Path) -> None:
    with pytest.raises(ValueError, match="fsync policy"):
        Spool(directory, 1 << 20, fsync="sometimes")  # type: ignore[arg-type]


# -- model-based: any sequence of operations, the spool replays what a plain list would ---------

operations = st.lists(st.one_of(
    st.tuples(st.just("append"), st.lists(st.binary(max_size=40), max_size=6)),
    st.tuples(st.just("ack"), st.integers(min_value=0, max_value=8)),
    st.tuples(st.just("requeue"), st.integers(min_value=0, max_value=6),
              st.lists(st.binary(max_size=40), max_size=4)),
    st.tuples(st.just("reopen")),
), max_size=25)


@settings(max_examples=60, deadline=None)
@given(operations)
def test_the_spool_behaves_like_a_bounded_list(ops: list[tuple[object, ...]]) -> None:
    max_bytes = 400
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        spool = Spool(directory, max_bytes, segment_bytes=96)
        model: list[bytes] = []

        def size(items: list[bytes]) -> int:
            return sum(FRAME_OVERHEAD + len(item) for item in items)

        try:
            for op in ops:
                if op[0] == "append":
                    batch: list[bytes] = op[1]  # type: ignore[assignment]
                    taken = spool.append(batch)
                    fits = 0
                    while fits < len(batch) and size(model + batch[:fits + 1]) <= max_bytes:
                        fits += 1
                    assert taken == fits
                    model += batch[:taken]
                elif op[0] in ("ack", "requeue"):
                    count: int = op[1]  # type: ignore[assignment]
                    read = spool.read(count)
                    assert [r.data for r in read] == model[:count]
                    through: SpoolPosition | None = read[-1].position if read else None
                    requeue: list[bytes] = (
                        op[2] if op[0] == "requeue" else [])  # type: ignore[assignment]
                    rest = model[len(read):]
                    taken = spool.acknowledge(through, requeue)
                    fits = 0
                    while fits < len(requeue) and size(rest + requeue[:fits + 1]) <= max_bytes:
                        fits += 1
                    assert taken == fits
                    model = requeue[:taken] + rest
                else:
                    spool.close()
                    spool = Spool(directory, max_bytes, segment_bytes=96)
                assert contents(spool) == model
                assert spool.pending_bytes == size(model) <= max_bytes
                assert spool.empty == (not model)
        finally:
            spool.close()
