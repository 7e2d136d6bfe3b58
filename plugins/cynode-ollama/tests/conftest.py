"""Fixtures for the cynode-ollama tests: a real Ollama-API server on loopback.

Ollama's own server is not installable here, so the server under test is the
embedded llamacpp backend (cynode-llamacpp, the ``test`` extra): the real
gemma-3-270m model behind Ollama's HTTP API. The plugin talks to it with the
official ``ollama`` client over real HTTP, exactly as it would talk to Ollama.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from cynode_llamacpp.backend import LlamaCppBackend
from cynode_ollama.backend import OllamaBackend

MODEL = "gemma3:270m"


@pytest.fixture(scope="module")
def ollama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppBackend]:
    """An Ollama-compatible server with the real model, once per test module."""
    server = LlamaCppBackend.from_options({"home": str(tmp_path_factory.mktemp("ollama-home"))})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def backend_options(ollama_server: LlamaCppBackend) -> dict[str, object]:
    """The options the node agent passes the backend's factory, pointing at the server."""
    return {
        "ollama_url": ollama_server.base_url,
        "model": None,
        "selected_model": MODEL,
        "home": "/unused",
        "state_dir": "/unused",
    }


@pytest.fixture
def backend(backend_options: dict[str, object]) -> Iterator[OllamaBackend]:
    """The ``ollama`` backend as the node agent builds it, pointed at the server, started."""
    started = OllamaBackend.from_options(backend_options)
    started.start()
    yield started
    started.stop()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
