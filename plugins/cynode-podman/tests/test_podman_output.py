"""The capped demultiplexer of Podman's log stream."""

from __future__ import annotations

import io
import struct

from cynode_podman.output import CappedBuffer, LogTail, read_frames


def _frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def test_streams_are_split_and_capped_independently() -> None:
    body = io.BytesIO(_frame(1, b"a" * 3_000_000) + _frame(2, b"err\n") + _frame(1, b"more"))
    stdout, stderr = CappedBuffer(1000), CappedBuffer(1000)
    read_frames(body, stdout, stderr)
    assert (bytes(stdout.data), stdout.truncated) == (b"a" * 1000, True)
    assert (bytes(stderr.data), stderr.truncated) == (b"err\n", False)


def test_output_of_exactly_the_cap_is_not_truncated() -> None:
    stdout, stderr = CappedBuffer(4), CappedBuffer(4)
    read_frames(io.BytesIO(_frame(1, b"ab") + _frame(1, b"cd")), stdout, stderr)
    assert (bytes(stdout.data), stdout.truncated) == (b"abcd", False)


def test_reading_stops_once_both_streams_are_full() -> None:
    body = io.BytesIO(_frame(1, b"xx") + _frame(2, b"yy") + _frame(1, b"never read"))
    stdout, stderr = CappedBuffer(1), CappedBuffer(1)
    read_frames(body, stdout, stderr)
    assert stdout.truncated and stderr.truncated and body.read() == _frame(1, b"never read")


def test_a_cut_stream_ends_quietly() -> None:
    stdout, stderr = CappedBuffer(100), CappedBuffer(100)
    read_frames(io.BytesIO(_frame(1, b"whole") + _frame(1, b"cut")[:10]), stdout, stderr)
    assert bytes(stdout.data) == b"wholecu"


def test_a_growing_log_is_read_in_whole_lines_and_only_what_was_kept_is_new(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "ctr.log"
    path.write_bytes(b"")
    with open(path, "rb") as log, open(path, "ab", buffering=0) as conmon:
        tail = LogTail(log, CappedBuffer(10), CappedBuffer(100))
        assert tail.read() == []
        conmon.write(b"2026-12-07T00:00:00Z stdout F one\n2026-12-07T00:00:00Z stderr P par")
        assert tail.read() == [("stdout", b"one\n")]  # the unended log line waits
        conmon.write(b"t\n2026-12-07T00:00:01Z stdout F two-and-more\n")
        assert tail.read() == [("stdout", b"two-an"), ("stderr", b"part")]
        conmon.write(b"2026-12-07T00:00:02Z stdout F past the cap\n")
        assert tail.read() == []
    assert tail.stdout.truncated and bytes(tail.stdout.data) == b"one\ntwo-an"
