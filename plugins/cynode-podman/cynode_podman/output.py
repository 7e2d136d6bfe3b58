"""Reading a job's output with a byte cap per stream.

Two sources, both read in chunks with bytes past the cap dropped as they
arrive, so memory stays at the caps plus one chunk whatever the job prints:

- the container's k8s-file log, read straight from the file conmon writes
  (:func:`open_log` before the job starts, :func:`read_k8s_log` after it);
- Podman's logs endpoint (:func:`read_frames`), when that file cannot be
  opened: frames of an 8-byte header (stream id, length) and a body.

The log file has a size cap (``container_config.log_size_max``): past it,
conmon starts a new file. The file opened before the start stays the first
one, so the job's first output is what is kept, as the caps say; a job
whose log outgrew the cap had output dropped that no reader saw, and both
of its streams are marked truncated (:func:`log_was_cut`).
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO, Protocol

_HEADER = struct.Struct(">BxxxL")
_CHUNK = 64 * 1024
_STDERR = 2
# A k8s-file line: "<timestamp> stdout F <text>"; conmon writes lines of at
# most its 8 KiB read buffer, so a longer one is not conmon's and is dropped.
_MAX_LOG_LINE = 64 * 1024
_FULL_LINE = b"F"


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


# -- the k8s-file log -----------------------------------------------------------


def open_log(path: str | None) -> BinaryIO | None:
    """The container log at ``path`` opened for reading, or None when this process cannot read it."""
    if not path:
        return None
    try:
        return open(path, "rb")  # noqa: SIM115 - held open across the run, closed by the caller
    except OSError:
        return None


def log_was_cut(log: BinaryIO) -> bool:
    """True when conmon replaced the opened log file by a new one: the log outgrew its size cap."""
    try:
        return os.stat(log.name).st_ino != os.fstat(log.fileno()).st_ino
    except OSError:  # the path is gone: nothing says the opened file is still the log
        return True


def read_k8s_log(log: BinaryIO, stdout: CappedBuffer, stderr: CappedBuffer) -> None:
    """Demultiplex a k8s-file log into ``stdout`` and ``stderr`` until it ends or both are full."""
    pending = b""
    while not (stdout.truncated and stderr.truncated):
        chunk = log.read(_CHUNK)
        if not chunk:
            return
        block = pending + chunk
        end = block.rfind(b"\n") + 1
        pending = block[end:]
        if len(pending) > _MAX_LOG_LINE:
            pending = b""
        _feed_lines(block[:end], stdout, stderr)


def _feed_lines(block: bytes, stdout: CappedBuffer, stderr: CappedBuffer) -> None:
    """Feed the whole log lines of ``block`` to their stream's buffer."""
    # A full stream needs no parsing: skip a block without a line of the other one.
    if stdout.truncated and b" stderr " not in block:
        return
    if stderr.truncated and b" stdout " not in block:
        return
    for line in block.split(b"\n"):
        parts = line.split(b" ", 3)
        if len(parts) < 4:
            continue
        _, stream, tag, text = parts
        target = stderr if stream == b"stderr" else stdout
        if not target.truncated:
            # "F" ends a line of the job's (the log line's newline is its own); "P" is a piece of one.
            target.feed(text + b"\n" if tag == _FULL_LINE else text)
