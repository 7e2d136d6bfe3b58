"""The ``fs`` blob store: one file per blob under a root directory.

A key (``artifacts/<id>/<random>``) is stored at
``<root>/blobs/<two hex digits>/<the key, percent-encoded>``, the two digits
taken from the key's SHA-256 so no directory grows too large. ``put``
streams into ``<root>/tmp/``, hashing as it writes, flushes the file to disk
and renames it into place (atomic on one file system), then flushes the
directory; past ``max_bytes`` it stops and removes what it wrote.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote

from cynode_core.contract import BlobInfo, BlobNotFound, BlobStoreUnavailable, BlobTooLarge
from cynode_core.contract.blobs import BLOB_CHUNK_BYTES

NAME = "fs"
# Temporary files older than this are a crash's leftovers.
TMP_MAX_AGE = 86400.0


class FsBlobStore:
    """Blobs as files under ``root``."""

    name = NAME

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        try:
            for directory in (self.root, self.root / "tmp", self.root / "blobs"):
                directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise BlobStoreUnavailable(f"blob directory {self.root}: {exc.strerror or exc}") from exc
        self._sweep_tmp()

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> FsBlobStore:
        root = options.get("artifact_dir") or (Path(str(options.get("home") or ".")) / "artifacts")
        return cls(Path(str(root)))

    def _path(self, key: str) -> Path:
        shard = hashlib.sha256(key.encode()).hexdigest()[:2]
        return self.root / "blobs" / shard / quote(key, safe="")

    def put(self, key: str, stream: BinaryIO, *, max_bytes: int) -> BlobInfo:
        temporary = self.root / "tmp" / secrets.token_hex(16)
        digest, size = hashlib.sha256(), 0
        try:
            with _disk(key, "written"):
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                while piece := stream.read(BLOB_CHUNK_BYTES):  # the sender's errors pass as they are
                    size += len(piece)
                    if size > max_bytes:
                        raise BlobTooLarge(f"the content is larger than {max_bytes} bytes")
                    digest.update(piece)
                    with _disk(key, "written"):
                        out.write(piece)
                with _disk(key, "written"):
                    out.flush()
                    os.fsync(out.fileno())
            target = self._path(key)
            with _disk(key, "written"):
                target.parent.mkdir(exist_ok=True, mode=0o700)
                os.replace(temporary, target)
                _fsync_dir(target.parent)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return BlobInfo(size, digest.hexdigest())

    def open(self, key: str, offset: int = 0) -> Iterator[bytes]:
        try:
            handle = self._path(key).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {key}") from None
        except OSError as exc:
            raise BlobStoreUnavailable(f"blob {key} could not be read: {exc.strerror or exc}") from exc
        return _pieces(handle, max(offset, 0))

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise BlobStoreUnavailable(f"blob {key} could not be deleted: {exc.strerror or exc}") from exc

    def keys_before(self, moment: dt.datetime) -> Iterator[str]:
        limit = moment.timestamp()
        for shard in sorted((self.root / "blobs").iterdir()):
            for entry in os.scandir(shard):
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < limit:
                    yield unquote(entry.name)

    def check(self) -> None:
        if not os.access(self.root / "tmp", os.W_OK | os.X_OK):
            raise BlobStoreUnavailable(f"blob directory {self.root} is not writable")

    def _sweep_tmp(self) -> None:
        cutoff = time.time() - TMP_MAX_AGE
        for entry in os.scandir(self.root / "tmp"):
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
            except OSError:
                continue


@contextmanager
def _disk(key: str, what: str) -> Iterator[None]:
    """The store's own file operations: a failure there is the store's (``BlobStoreUnavailable``)."""
    try:
        yield
    except OSError as exc:
        raise BlobStoreUnavailable(f"blob {key} could not be {what}: {exc.strerror or exc}") from exc


def _pieces(handle: BinaryIO, offset: int) -> Iterator[bytes]:
    with handle:
        handle.seek(offset)
        while piece := handle.read(BLOB_CHUNK_BYTES):
            yield piece


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
