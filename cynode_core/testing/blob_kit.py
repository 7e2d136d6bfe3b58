"""The blob store contract kit: :class:`BlobStoreContract`, which every blob store must pass.

Subclass it in a test module and provide a ``store`` fixture giving a fresh,
empty store (``cynode_core.contract.blobs``)::

    class TestMyStoreContract(BlobStoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            yield MyStore(tmp_path)

The cases need nothing but the store: content round-trips with its size and
SHA-256, in pieces of at most 1 MiB and from any offset; an upload past its
limit, or whose stream fails, leaves nothing; a key missing is
``BlobNotFound``; delete is idempotent; ``keys_before`` lists what was
written before a moment, and nothing after.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os

import pytest

from cynode_core.contract.blobs import BLOB_CHUNK_BYTES, BlobNotFound, BlobStore, BlobTooLarge


class BrokenStream(io.RawIOBase):
    """A body whose sender goes away after ``good`` bytes."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise ConnectionResetError("the client went away")
        piece = b"x" * min(size if size > 0 else self.left, self.left)
        self.left -= len(piece)
        return piece


class BlobStoreContract:
    """The behaviour every blob store owes the orchestrator (docs/hooks.md#blob-stores)."""

    def test_is_a_blob_store_with_a_name(self, store: BlobStore) -> None:
        assert isinstance(store, BlobStore) and isinstance(store.name, str) and store.name
        store.check()

    def test_content_round_trips_in_pieces_and_from_any_offset(self, store: BlobStore) -> None:
        content = os.urandom(2 * BLOB_CHUNK_BYTES + 1234)
        info = store.put("artifacts/kit/1", io.BytesIO(content), max_bytes=len(content))
        assert (info.size_bytes, info.sha256) == (len(content), hashlib.sha256(content).hexdigest())
        pieces = list(store.open("artifacts/kit/1"))
        assert b"".join(pieces) == content and all(0 < len(p) <= BLOB_CHUNK_BYTES for p in pieces)
        for offset in (1, BLOB_CHUNK_BYTES - 1, BLOB_CHUNK_BYTES, 2 * BLOB_CHUNK_BYTES + 1000, len(content)):
            assert b"".join(store.open("artifacts/kit/1", offset)) == content[offset:], offset
        empty = store.put("artifacts/kit/empty", io.BytesIO(b""), max_bytes=10)
        assert (empty.size_bytes, b"".join(store.open("artifacts/kit/empty"))) == (0, b"")

    def test_an_upload_past_its_limit_or_cut_short_leaves_nothing(self, store: BlobStore) -> None:
        with pytest.raises(BlobTooLarge):
            store.put("artifacts/kit/big", io.BytesIO(b"y" * 5001), max_bytes=5000)
        with pytest.raises(ConnectionResetError):
            store.put("artifacts/kit/cut", BrokenStream(BLOB_CHUNK_BYTES + 10), max_bytes=10 * BLOB_CHUNK_BYTES)  # type: ignore[arg-type]
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
        assert list(store.keys_before(later)) == []
        for key in ("artifacts/kit/big", "artifacts/kit/cut"):
            with pytest.raises(BlobNotFound):
                store.open(key)
        exact = store.put("artifacts/kit/exact", io.BytesIO(b"z" * 5000), max_bytes=5000)  # the limit itself is fine
        assert exact.size_bytes == 5000

    def test_delete_is_idempotent_and_keys_before_lists_by_time(self, store: BlobStore) -> None:
        before = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        store.put("artifacts/kit/a", io.BytesIO(b"hello"), max_bytes=100)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
        assert list(store.keys_before(later)) == ["artifacts/kit/a"]
        assert list(store.keys_before(before)) == []
        store.delete("artifacts/kit/a")
        store.delete("artifacts/kit/a")
        with pytest.raises(BlobNotFound):
            store.open("artifacts/kit/a")
