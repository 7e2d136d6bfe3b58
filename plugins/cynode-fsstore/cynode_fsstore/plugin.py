"""The hook implementation the ``cynode`` entry point ``fsstore`` loads."""

from __future__ import annotations

from collections.abc import Mapping

from cynode_core import hookimpl
from cynode_core.contract import BlobStore, RegisterBlobStore

STORE_NAME = "fs"


def create_store(options: Mapping[str, object]) -> BlobStore:
    """A :class:`~cynode_fsstore.store.FsBlobStore` at ``options["artifact_dir"]``."""
    from cynode_fsstore.store import FsBlobStore

    return FsBlobStore.from_options(options)


@hookimpl
def cynode_register_blob_stores(register: RegisterBlobStore) -> None:
    """Offer the ``fs`` store to the orchestrator."""
    register(STORE_NAME, create_store)
