"""Reading a container's multiplexed log stream with a byte cap per stream.

The Podman logs endpoint sends frames of an 8-byte header (stream id, length)
and a body. A single frame can be megabytes long (Podman joins partial log
lines), so bodies are read in chunks and bytes past the cap are dropped as
they arrive: memory stays at the caps plus one chunk whatever the job prints.
"""

from __future__ import annotations

import struct
from typing import Protocol

_HEADER = struct.Struct(">BxxxL")
_CHUNK = 64 * 1024
_STDERR = 2


class Readable(Protocol):
    """What the reader needs of a response body (``urllib3`` raw response)."""

    def read(self, amt: int) -> bytes: ...


class CappedBuffer:
    """Keeps the first ``cap`` bytes fed to it and notes whether more came."""

    def __init__(self, cap: int) -> None:
        self.cap = max(cap, 0)
        self.data = bytearray()
        self.truncated = False

    def feed(self, chunk: bytes) -> None:
        """Append ``chunk``, dropping whatever does not fit under the cap."""
        room = self.cap - len(self.data)
        if len(chunk) > room:
            self.truncated = True
            chunk = chunk[:room] if room > 0 else b""
        self.data += chunk


def read_frames(body: Readable, stdout: CappedBuffer, stderr: CappedBuffer) -> None:
    """Demultiplex ``body`` into ``stdout`` and ``stderr`` until it ends.

    Stops early once both buffers are truncated: nothing more can be kept.
    """
    while not (stdout.truncated and stderr.truncated):
        header = _read_exact(body, _HEADER.size)
        if len(header) < _HEADER.size:
            return
        stream, remaining = _HEADER.unpack(header)
        target = stderr if stream == _STDERR else stdout
        while remaining:
            chunk = body.read(min(remaining, _CHUNK))
            if not chunk:
                return
            remaining -= len(chunk)
            target.feed(chunk)


def _read_exact(body: Readable, size: int) -> bytes:
    """Read ``size`` bytes unless the body ends first."""
    data = b""
    while len(data) < size:
        chunk = body.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data
