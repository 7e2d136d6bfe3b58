"""cynode_core.http_chunked: the strict chunked-body reader of the proxy and the embedded model's API."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cynode_core.http_chunked import BadChunkedBody, ChunkedBodyTooLarge, read_chunked


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def test_a_well_formed_body_is_read_whole_and_the_stream_left_after_it() -> None:
    stream = io.BytesIO(chunked(b"hello ", b"world") + b"NEXT")
    assert read_chunked(stream, 100) == b"hello world"
    assert stream.read() == b"NEXT"


def test_trailers_are_read_past() -> None:
    stream = io.BytesIO(b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\nNEXT")
    assert read_chunked(stream, 100) == b"abc" and stream.read() == b"NEXT"


@pytest.mark.parametrize(
    "raw",
    [
        b"-5\r\nabc\r\n0\r\n\r\n",  # negative size
        b"+3\r\nabc\r\n0\r\n\r\n",  # signed size
        b"123456789\r\n",  # more than eight hex digits (overflow)
        b"3;name=value\r\nabc\r\n0\r\n\r\n",  # chunk extension
        b"3 \r\nabc\r\n0\r\n\r\n",  # whitespace
        b"3\nabc\r\n0\r\n\r\n",  # size line without CR
        b"3\r\nabcX\r\n0\r\n\r\n",  # data not followed by CRLF
        b"3\r\nab",  # ends inside a chunk
        b"zz\r\n",  # not hex
        b"",  # nothing at all
        b"3" * 5000 + b"\r\n",  # endless size line
        b"0\r\n" + b"X: y\r\n" * 100 + b"\r\n",  # endless trailers
    ],
)
def test_any_other_syntax_is_a_bad_body(raw: bytes) -> None:
    with pytest.raises(BadChunkedBody):
        read_chunked(io.BytesIO(raw), 1 << 20)


def test_a_body_over_the_limit_is_too_large_and_is_never_kept() -> None:
    with pytest.raises(ChunkedBodyTooLarge):
        read_chunked(io.BytesIO(chunked(b"x" * 600, b"y" * 600)), 1000)


def test_a_body_far_over_the_drain_limit_stops_being_read() -> None:
    # The size line alone announces 4 GiB: refused at once, no data is read.
    stream = io.BytesIO(b"ffffffff\r\n" + b"x" * 10)
    with pytest.raises(ChunkedBodyTooLarge):
        read_chunked(stream, 1000, drain_limit=2000)
    assert stream.read() == b"x" * 10


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_either_parse_or_are_refused_cleanly(raw: bytes) -> None:
    try:
        body = read_chunked(io.BytesIO(raw), 64)
    except (BadChunkedBody, ChunkedBodyTooLarge):
        return
    assert len(body) <= 64


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40), max_size=6))
def test_every_well_formed_body_round_trips(parts: list[bytes]) -> None:
    assert read_chunked(io.BytesIO(chunked(*parts)), 1000) == b"".join(parts)
