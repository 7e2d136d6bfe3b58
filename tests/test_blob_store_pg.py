"""The built-in ``pg`` blob store on a real PostgreSQL (cynode_core/orchestrator/blobs/pg_store.py).

Content round-trips in chunks and from any offset, with its size and
SHA-256; an upload past its limit, or one whose stream fails, leaves
nothing behind; a second store on the same database (another orchestrator)
reads what the first wrote; the stores a process has are those the hook
registered.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
from collections.abc import Iterator

import pytest
from harness.orchestrator import OrchestratorUnderTest, rows

from cynode_core.contract.blobs import BlobNotFound, BlobStore, BlobStoreUnavailable, BlobTooLarge
from cynode_core.orchestrator.blobs.pg_store import PgBlobStore
from cynode_core.orchestrator.blobs.stores import BlobStores
from cynode_core.orchestrator.db import make_engine

CHUNK = 1000  # small chunks, so a few kilobytes span several


def url(orchestrator: OrchestratorUnderTest) -> str:
    assert orchestrator.settings.database_url is not None
    return orchestrator.settings.database_url


@pytest.fixture
def store(orchestrator: OrchestratorUnderTest) -> Iterator[PgBlobStore]:
    made = PgBlobStore(make_engine(url(orchestrator), pool_size=2), chunk_bytes=CHUNK)
    yield made
    made.close()


class FailingStream(io.RawIOBase):
    """A body whose client goes away after ``good`` bytes."""

    def __init__(self, good: int) -> None:
        self.left = good

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise ConnectionResetError("client went away")
        piece = b"x" * min(size, self.left)
        self.left -= len(piece)
        return piece


def test_content_round_trips_in_chunks_and_from_any_offset(
    store: PgBlobStore, orchestrator: OrchestratorUnderTest
) -> None:
    content = os.urandom(3 * CHUNK + 123)
    info = store.put("artifacts/a/1", io.BytesIO(content), max_bytes=10_000)
    assert (info.size_bytes, info.sha256) == (len(content), hashlib.sha256(content).hexdigest())
    assert isinstance(store, BlobStore)
    pieces = list(store.open("artifacts/a/1"))
    assert b"".join(pieces) == content and all(len(p) <= CHUNK for p in pieces) and len(pieces) == 4
    for offset in (0, 1, CHUNK - 1, CHUNK, 2 * CHUNK + 500, len(content) - 1, len(content), len(content) + 7):
        assert b"".join(store.open("artifacts/a/1", offset)) == content[offset:], offset
    [blob] = rows(orchestrator.db, "SELECT size_bytes, checksum_sha256, chunk_bytes FROM artifact_blobs")
    assert (blob["size_bytes"], blob["checksum_sha256"], blob["chunk_bytes"]) == (len(content), info.sha256, CHUNK)
    empty = store.put("artifacts/a/empty", io.BytesIO(b""), max_bytes=10)
    assert (empty.size_bytes, list(store.open("artifacts/a/empty"))) == (0, [])


def test_too_large_or_broken_uploads_leave_nothing(store: PgBlobStore, orchestrator: OrchestratorUnderTest) -> None:
    with pytest.raises(BlobTooLarge):
        store.put("artifacts/b/1", io.BytesIO(b"y" * (2 * CHUNK + 1)), max_bytes=2 * CHUNK)
    with pytest.raises(ConnectionResetError):
        store.put("artifacts/b/2", FailingStream(CHUNK * 2 + 10), max_bytes=10**6)  # type: ignore[arg-type]
    assert rows(orchestrator.db, "SELECT key FROM artifact_blobs") == []
    assert rows(orchestrator.db, "SELECT blob_key FROM artifact_blob_chunks") == []
    exact = store.put("artifacts/b/3", io.BytesIO(b"z" * (2 * CHUNK)), max_bytes=2 * CHUNK)  # the limit itself is fine
    assert exact.size_bytes == 2 * CHUNK


def test_delete_is_idempotent_and_a_missing_blob_is_not_found(store: PgBlobStore) -> None:
    store.put("artifacts/c/1", io.BytesIO(b"hello"), max_bytes=100)
    before = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    assert list(store.keys_before(before)) == ["artifacts/c/1"]
    assert list(store.keys_before(before - dt.timedelta(hours=1))) == []
    store.delete("artifacts/c/1")
    store.delete("artifacts/c/1")
    with pytest.raises(BlobNotFound):
        store.open("artifacts/c/1")
    store.check()


def test_another_orchestrators_store_reads_the_same_blob(
    store: PgBlobStore, orchestrator: OrchestratorUnderTest
) -> None:
    store.put("artifacts/d/1", io.BytesIO(b"shared"), max_bytes=100)
    other = PgBlobStore.from_options({"database_url": url(orchestrator)})
    try:
        assert b"".join(other.open("artifacts/d/1")) == b"shared"
    finally:
        other.close()


def test_the_process_has_the_registered_stores_and_writes_to_the_chosen_one(
    orchestrator: OrchestratorUnderTest,
) -> None:
    pm = orchestrator.app.extensions["cynode"].pm
    stores = BlobStores(pm, {"database_url": url(orchestrator)}, default="pg")
    try:
        assert "pg" in stores.names and stores.for_writing().name == "pg"
        assert stores.named("pg") is stores.for_writing()
        with pytest.raises(BlobStoreUnavailable, match="'s3' is not installed"):
            stores.named("s3")
    finally:
        stores.close()
