"""The orchestrator's blob stores: every registered store by name, the one new blobs go to.

Stores come from ``cynode_register_blob_stores`` (the built-in ``pg`` is
registered through it like any plugin's). Each is built on first use with
the same options (``database_url``, ``home``, ``artifact_dir``) and kept for
the process's life. ``artifact_store`` names where new blobs go; an
artifact is always read through the store named in its row, so changing
the setting never strands what was written before. A row whose store is
not installed is :class:`BlobStoreUnavailable` (503).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import pluggy

from cynode_core import hookimpl
from cynode_core.contract.blobs import BlobStore, BlobStoreFactory, BlobStoreUnavailable
from cynode_core.orchestrator.blobs.pg_store import NAME as PG_STORE
from cynode_core.orchestrator.blobs.pg_store import PgBlobStore

log = logging.getLogger(__name__)

PLUGIN_NAME = "blob-store-pg"


class BuiltinBlobStores:
    """The plugin that offers the ``pg`` store."""

    @hookimpl
    def cynode_register_blob_stores(self, register: Any) -> None:
        register(PG_STORE, PgBlobStore.from_options)


class BlobStores:
    """The stores of one orchestrator process."""

    def __init__(self, pm: pluggy.PluginManager, options: Mapping[str, object], default: str) -> None:
        self.default = default
        self._options = dict(options)
        self._factories: dict[str, BlobStoreFactory] = {}
        self._built: dict[str, BlobStore] = {}
        self._lock = threading.Lock()

        def register(name: str, factory: BlobStoreFactory) -> None:
            if name in self._factories:
                log.warning("blob store %r registered again: the first registration is kept", name)
                return
            self._factories[name] = factory

        pm.hook.cynode_register_blob_stores(register=register)

    @property
    def names(self) -> list[str]:
        return sorted(self._factories)

    def for_writing(self) -> BlobStore:
        """The store new blobs go to (``artifact_store``)."""
        return self.named(self.default)

    def named(self, name: str) -> BlobStore:
        """The store called ``name``; :class:`BlobStoreUnavailable` when none is installed under it."""
        with self._lock:
            store = self._built.get(name)
            if store is not None:
                return store
            factory = self._factories.get(name)
            if factory is None:
                installed = ", ".join(self.names) or "none"
                raise BlobStoreUnavailable(f"blob store {name!r} is not installed (installed: {installed})")
            store = self._built[name] = factory(self._options)
            return store

    def close(self) -> None:
        with self._lock:
            built, self._built = list(self._built.values()), {}
        for store in built:
            close = getattr(store, "close", None)
            if callable(close):
                close()
