"""Fixtures for the cynode-llamacpp tests: the real bundled model, a real server on loopback.

The bundled gemma-3-270m GGUF is assembled once per session into a temporary
``CYNODE_HOME``; each test module that needs a server starts one backend
(about a second) and stops it at the end. Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cynode_llamacpp.backend import LlamaCppBackend
from cynode_llamacpp.model_file import ensure_bundled_model
from llamacpp_http import MODEL, Call, Reply, http_call


@pytest.fixture(scope="session")
def llamacpp_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``CYNODE_HOME`` whose ``models/`` holds the assembled bundled model."""
    home = tmp_path_factory.mktemp("cynode-home")
    ensure_bundled_model(home / "models")
    return home


@pytest.fixture(scope="session")
def backend_options(llamacpp_home: Path) -> dict[str, object]:
    """The options the node agent passes the backend's factory, selecting the bundled model."""
    return {
        "home": str(llamacpp_home),
        "model": None,
        "selected_model": MODEL,
        "ollama_url": "http://127.0.0.1:11434",
        "state_dir": str(llamacpp_home),
    }


@pytest.fixture(scope="module")
def backend(backend_options: dict[str, object]) -> Iterator[LlamaCppBackend]:
    """One started backend for the test module, as the node agent builds it."""
    started = LlamaCppBackend.from_options(backend_options)
    started.start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def call(backend: LlamaCppBackend) -> Call:
    """``call(method, path, body=None, headers=None)`` against the module's server."""

    def _call(method: str, path: str, body: object = None, headers: dict[str, str] | None = None) -> Reply:
        return http_call(backend.base_url, method, path, body, headers)

    return _call
