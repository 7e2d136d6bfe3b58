"""The blob store contract: where artifact bytes live (artifacts_contract.md 5, as issue 15 decides it).

A store keeps blobs by key. The orchestrator writes each new blob under a
new key and only then points an artifact row at it, so a reader never sees
a partial blob and a replaced artifact switches content in one commit; a
key is written once. ``put`` streams: it computes the size and SHA-256
while it writes and stops with :class:`BlobTooLarge` as soon as
``max_bytes`` is passed, leaving nothing behind. The orchestrator deletes a
blob when its artifact goes, and sweeps blobs no row points at (a crash
between ``put`` and the row's commit) with :meth:`BlobStore.keys_before`.

Stores are plugins (``cynode_register_blob_stores``): ``pg``, built in and
the default, keeps blobs in the orchestrator's PostgreSQL; ``fs``
(distribution ``cynode-fsstore``) in a directory. ``factory(options)`` gets
plain values: ``database_url``, ``home`` (the orchestrator's state
directory) and ``artifact_dir``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

from cynode_core.contract.errors import NotFound, TooLarge, Unavailable

# How much a store reads from a stream at once, and hands back per read.
BLOB_CHUNK_BYTES = 1024 * 1024


class BlobTooLarge(TooLarge):
    """The stream passed ``max_bytes``; nothing was kept."""


class BlobNotFound(NotFound):
    """No blob under this key."""


class BlobStoreUnavailable(Unavailable):
    """The store cannot be used now (not reachable, not writable)."""


@dataclass(frozen=True)
class BlobInfo:
    """What ``put`` wrote: the size in bytes and the SHA-256 of the content, lowercase hex."""

    size_bytes: int
    sha256: str


@runtime_checkable
class BlobStore(Protocol):
    """Where blobs live; every method may raise :class:`BlobStoreUnavailable`."""

    name: str

    def put(self, key: str, stream: BinaryIO, *, max_bytes: int) -> BlobInfo:
        """Store everything ``stream`` yields under a new ``key``; visible only once complete."""
        ...

    def open(self, key: str, offset: int = 0) -> Iterator[bytes]:
        """The blob's bytes from ``offset`` on, in pieces of at most :data:`BLOB_CHUNK_BYTES`; raises
        :class:`BlobNotFound` (before the first piece) when there is no such blob."""
        ...

    def delete(self, key: str) -> None:
        """Remove the blob; a key that does not exist is not an error."""
        ...

    def keys_before(self, moment: dt.datetime) -> Iterator[str]:
        """Keys of the blobs written before ``moment`` (the sweep's candidates)."""
        ...

    def check(self) -> None:
        """Raise :class:`BlobStoreUnavailable` when the store cannot take a write now."""
        ...


BlobStoreFactory = Callable[[Mapping[str, object]], BlobStore]
RegisterBlobStore = Callable[[str, BlobStoreFactory], None]
