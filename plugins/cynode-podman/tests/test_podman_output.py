"""The capped demultiplexer of Podman's log stream."""

from __future__ import annotations

import io
import struct

from cynode_podman.output import CappedBuffer, read_frames


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
