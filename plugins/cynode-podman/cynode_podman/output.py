"""Reading a job's output with a byte cap per stream.

Two sources, both read in chunks with bytes past the cap dropped as they
arrive, so memory stays at the caps plus one chunk whatever the job prints:

- the container's k8s-file log, read straight from the file conmon writes
  (:func:`open_log` before the job starts, :class:`LogTail` while it runs
  and after it);
- Podman's logs endpoint (:func:`read_frames`), when that file cannot be
  opened: frames of an 8-byte header (stream id, length) and a body.

The log file has a size cap (``container_config.log_size_max``): past it,
conmon starts a new file. The file opened before the start stays the first
one, so the job's first output is what is kept, as the caps say; a job
whose log outgrew the cap had output dropped that no reader saw, and both
of its streams are marked truncated (:func:`log_was_cut`).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections.abc import Callable
from typing import BinaryIO, Protocol

from podman import PodmanClient
from podman.domain.containers import Container

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">BxxxL")
# A running job's log is read this often, at most this much per read, for SandboxSpec.on_output.
FOLLOW_INTERVAL = 0.15
FOLLOW_READ_LIMIT = 256 * 1024
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


class LogTail:
    """Reads a k8s-file log as it grows, whole lines only, into ``stdout`` and ``stderr``.

    :meth:`read` takes what the file holds now (or at most ``limit`` bytes of
    it) and answers the bytes it newly kept per stream; a line not yet ended
    waits for the next read. Called while the job runs, it follows the
    output; called once after the end, it reads it all.
    """

    def __init__(self, log: BinaryIO, stdout: CappedBuffer, stderr: CappedBuffer) -> None:
        self.log = log
        self.stdout = stdout
        self.stderr = stderr
        self._pending = b""

    def read(self, limit: int | None = None) -> list[tuple[str, bytes]]:
        """Read on to the end of the file (or ``limit`` bytes); ``[(stream, newly kept bytes)]``."""
        kept = len(self.stdout.data), len(self.stderr.data)
        taken = 0
        while not (self.stdout.truncated and self.stderr.truncated):
            if limit is not None and taken >= limit:
                break
            chunk = self.log.read(_CHUNK)
            if not chunk:
                break
            taken += len(chunk)
            block = self._pending + chunk
            end = block.rfind(b"\n") + 1
            self._pending = block[end:]
            if len(self._pending) > _MAX_LOG_LINE:
                self._pending = b""
            _feed_lines(block[:end], self.stdout, self.stderr)
        news = [("stdout", bytes(self.stdout.data[kept[0] :])), ("stderr", bytes(self.stderr.data[kept[1] :]))]
        return [(stream, data) for stream, data in news if data]


def read_k8s_log(log: BinaryIO, stdout: CappedBuffer, stderr: CappedBuffer) -> None:
    """Demultiplex a k8s-file log into ``stdout`` and ``stderr`` until it ends or both are full."""
    LogTail(log, stdout, stderr).read()


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


class LogFollower:
    """A thread handing a running job's new output to ``sink`` every :data:`FOLLOW_INTERVAL` s.

    ``sink`` may block (the node sending a batch): the log is then read
    later, never faster than the sink takes it; what conmon writes meanwhile
    waits in the file, up to its size cap.
    """

    def __init__(self, tail: LogTail, sink: Callable[[str, bytes], None]) -> None:
        self.tail = tail
        self._sink = sink
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="job-output", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading (idempotent)."""
        self._stop.set()
        self._thread.join()

    def finish(self) -> None:
        """Stop, then read the rest of the log into the tail's buffers (it goes out with the outcome, not the sink).

        The job has ended: what it printed since the last read is in the outcome the caller returns at
        once, so it is not handed to the sink (a sink that sends it would only delay the end).
        """
        self.stop()
        self.tail.read()

    def _follow(self) -> None:
        while not self._stop.wait(FOLLOW_INTERVAL):
            self._emit(self.tail.read(FOLLOW_READ_LIMIT))

    def _emit(self, news: list[tuple[str, bytes]]) -> None:
        for stream, data in news:
            try:
                self._sink(stream, data)
            except Exception:  # noqa: BLE001 - the node's sink failing must not fail the job
                log.exception("job output sink failed")


def read_output(
    client: PodmanClient, container: Container, tail: LogTail | None, max_output_bytes: int
) -> tuple[CappedBuffer, CappedBuffer]:
    """A job's capped stdout and stderr once it exited: the rest of its log file, else Podman's logs endpoint."""
    if tail is not None:
        tail.read()
        if log_was_cut(tail.log):
            # Output past the log's cap was dropped unread, of either stream.
            tail.stdout.truncated = tail.stderr.truncated = True
        return tail.stdout, tail.stderr
    stdout, stderr = CappedBuffer(max_output_bytes), CappedBuffer(max_output_bytes)
    response = client.api.get(f"/containers/{container.id}/logs", params={"stdout": True, "stderr": True}, stream=True)
    try:
        response.raise_for_status()
        read_frames(response.raw, stdout, stderr)
    finally:
        response.close()  # stops the transfer when both caps were reached early
    return stdout, stderr
