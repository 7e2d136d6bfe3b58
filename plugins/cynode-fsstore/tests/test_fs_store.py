"""The ``fs`` blob store: the contract kit, and what is its own (atomic rename, file modes, leftovers swept)."""

from __future__ import annotations

import io
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cynode_fsstore.plugin import STORE_NAME, create_store
from cynode_fsstore.store import FsBlobStore

from cynode_core.contract import BlobStoreUnavailable
from cynode_core.testing.blob_kit import BlobStoreContract, BrokenStream


class TestFsStoreContract(BlobStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[FsBlobStore]:
        yield FsBlobStore(tmp_path / "artifacts")


def test_files_are_private_and_temporary_files_never_stay(tmp_path: Path) -> None:
    store = create_store({"artifact_dir": str(tmp_path / "root")})
    assert store.name == STORE_NAME == "fs"
    store.put("artifacts/a/1", io.BytesIO(b"secret"), max_bytes=100)
    with pytest.raises(ConnectionResetError):
        store.put("artifacts/a/2", BrokenStream(10), max_bytes=100)  # type: ignore[arg-type]
    root = tmp_path / "root"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    [blob] = [p for p in (root / "blobs").rglob("*") if p.is_file()]
    assert stat.S_IMODE(blob.stat().st_mode) == 0o600 and blob.read_bytes() == b"secret"
    assert list((root / "tmp").iterdir()) == []


def test_a_crashs_old_temporary_files_are_removed_at_start(tmp_path: Path) -> None:
    FsBlobStore(tmp_path)
    old, fresh = tmp_path / "tmp" / "old", tmp_path / "tmp" / "fresh"
    old.write_bytes(b"half")
    fresh.write_bytes(b"in flight")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    FsBlobStore(tmp_path)
    assert not old.exists() and fresh.exists()


def test_a_root_that_cannot_be_made_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(BlobStoreUnavailable):
        FsBlobStore(tmp_path / "file" / "root")
