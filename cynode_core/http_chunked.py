"""A strict reader of HTTP/1.1 chunked request bodies, bounded in size.

Used by the servers cynode runs on raw sockets (the node's per-job inference
proxy, the embedded model's API). Only the plain chunk syntax is accepted:
a size in hex digits, CRLF, the data, CRLF; no sign, no chunk extensions,
no size longer than eight digits; at most a few short trailer lines. Anything
else is :class:`BadChunkedBody` (answer 400). A body over ``limit`` is
:class:`ChunkedBodyTooLarge` (answer 413); it is first read on, without
keeping it, up to ``drain_limit`` bytes, so a client still sending sees the
answer instead of a broken pipe. Nothing is ever buffered beyond ``limit``.
Standard library only: it runs in a contract-only install.
"""

from __future__ import annotations

import re
from typing import Protocol

MAX_LINE = 1024
MAX_TRAILERS = 32
READ_CHUNK = 64 * 1024
# Eight hex digits (up to 4 GiB per chunk): longer sizes are refused before any arithmetic.
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,8})\r\n")


class Readable(Protocol):
    """What the reader needs of a stream (a socket file, a buffered reader, BytesIO)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readline(self, size: int = -1, /) -> bytes: ...


class BadChunkedBody(ValueError):
    """The body does not follow the chunked syntax (or ends early)."""


class ChunkedBodyTooLarge(Exception):
    """The body is longer than the limit."""


def _line(stream: Readable) -> bytes:
    line = stream.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise BadChunkedBody("chunked body line too long")
    return line


def read_chunked(stream: Readable, limit: int, drain_limit: int | None = None) -> bytes:
    """Read one chunked body from ``stream``; at most ``limit`` bytes are kept."""
    drain_limit = limit if drain_limit is None else max(drain_limit, limit)
    body = bytearray()
    total = 0
    while True:
        match = _SIZE_LINE.fullmatch(_line(stream))
        if match is None:
            raise BadChunkedBody("invalid chunk size line")
        size = int(match.group(1), 16)
        if size == 0:
            break
        total += size
        if total > drain_limit:
            raise ChunkedBodyTooLarge()
        while size > 0:
            data = stream.read(min(size, READ_CHUNK))
            if not data:
                raise BadChunkedBody("chunked body ends inside a chunk")
            size -= len(data)
            if total <= limit:
                body += data
        if stream.read(2) != b"\r\n":
            raise BadChunkedBody("chunk data not followed by CRLF")
    for _ in range(MAX_TRAILERS):
        if _line(stream) in (b"\r\n", b""):
            break
    else:
        raise BadChunkedBody("too many trailer lines")
    if total > limit:
        raise ChunkedBodyTooLarge()
    return bytes(body)
