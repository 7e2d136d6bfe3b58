"""The built-in ``pg`` blob store on a real PostgreSQL (cynode_core/orchestrator/blobs/pg_store.py).

It passes the blob store contract kit; its content is chunked as said (a
range reads from the chunk an offset falls in); a second store on the same
database (another orchestrator) reads what the first wrote; the stores a
process has are those the hook registered.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from harness.orchestrator import OrchestratorUnderTest, rows
from sqlalchemy import text

from cynode_core.contract.blobs import BlobStoreUnavailable
from cynode_core.orchestrator.blobs.pg_store import PgBlobStore
from cynode_core.orchestrator.blobs.stores import BlobStores
from cynode_core.orchestrator.db import make_engine
from cynode_core.testing.blob_kit import BlobStoreContract


def url(orchestrator: OrchestratorUnderTest) -> str:
    return str(orchestrator.db.url)


class TestPgStoreContract(BlobStoreContract):
    @pytest.fixture
    def store(self, orchestrator: OrchestratorUnderTest) -> Iterator[PgBlobStore]:
        made = PgBlobStore(make_engine(url(orchestrator), pool_size=2))
        yield made
        made.close()


def test_chunks_are_rows_of_the_chunk_size_and_a_range_starts_in_its_chunk(orchestrator: OrchestratorUnderTest) -> None:
    store = PgBlobStore(make_engine(url(orchestrator), pool_size=2), chunk_bytes=1000)
    try:
        content = bytes(range(256)) * 14  # 3584 bytes: chunks of 1000, 1000, 1000, 584
        store.put("artifacts/c/1", io.BytesIO(content), max_bytes=10_000)
        sizes = rows(orchestrator.db, "SELECT length(data) AS n FROM artifact_blob_chunks ORDER BY seq")
        assert [r["n"] for r in sizes] == [1000, 1000, 1000, 584]
        assert b"".join(store.open("artifacts/c/1", 2500)) == content[2500:]
        with orchestrator.db.session() as session:
            session.execute(text("DELETE FROM artifact_blobs"))
        assert rows(orchestrator.db, "SELECT blob_key FROM artifact_blob_chunks") == []  # chunks go with their blob
    finally:
        store.close()


def test_another_orchestrators_store_reads_the_same_blob(orchestrator: OrchestratorUnderTest) -> None:
    first = PgBlobStore.from_options({"database_url": url(orchestrator)})
    other = PgBlobStore.from_options({"database_url": url(orchestrator)})
    try:
        first.put("artifacts/d/1", io.BytesIO(b"shared"), max_bytes=100)
        assert b"".join(other.open("artifacts/d/1")) == b"shared"
    finally:
        first.close()
        other.close()


def test_the_process_has_the_registered_stores_and_writes_to_the_chosen_one(
    orchestrator: OrchestratorUnderTest,
) -> None:
    pm = orchestrator.app.extensions["cynode"].pm
    stores = BlobStores(pm, {"database_url": url(orchestrator)}, default="pg")
    try:
        assert {"pg", "fs"} <= set(stores.names) and stores.for_writing().name == "pg"
        assert stores.named("pg") is stores.for_writing()
        with pytest.raises(BlobStoreUnavailable, match="'s3' is not installed"):
            stores.named("s3")
    finally:
        stores.close()
