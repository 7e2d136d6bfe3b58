"""Fixtures for the cynode-llamacpp tests: the real bundled model, a real server on loopback.

The bundled gemma-3-270m GGUF is assembled once per session into a temporary
``CYNODE_HOME``; each test module that needs a server starts one backend
(about a second) and stops it at the end. Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cynode_llamacpp.backend import LlamaCppBackend
from cynode_llamacpp.model_file import ensure_bundled_model

MODEL = "gemma3:270m"


@dataclass
class Reply:
    """One HTTP answer, read completely."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def json(self) -> Any:
        return json.loads(self.body)

    def lines(self) -> list[dict[str, Any]]:
        """The NDJSON objects of a streamed answer, in order."""
        return [json.loads(line) for line in self.body.decode("utf-8").splitlines() if line.strip()]


Call = Callable[..., Reply]


def http_call(base_url: str, method: str, path: str, body: object = None,
              headers: dict[str, str] | None = None, timeout: float = 60) -> Reply:
    """One request on a fresh connection; ``body`` is JSON-encoded unless it is bytes."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        connection.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


@pytest.fixture(scope="session")
def llamacpp_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``CYNODE_HOME`` whose ``models/`` holds the assembled bundled model."""
    home = tmp_path_factory.mktemp("cynode-home")
    ensure_bundled_model(home / "models")
    return home


@pytest.fixture(scope="module")
def backend(llamacpp_home: Path) -> Iterator[LlamaCppBackend]:
    """One started backend for the test module, as the node agent builds it."""
    started = LlamaCppBackend.from_options({"home": str(llamacpp_home), "model": None, "selected_model": MODEL,
                                            "ollama_url": "http://127.0.0.1:11434", "state_dir": str(llamacpp_home)})
    started.start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def call(backend: LlamaCppBackend) -> Call:
    """``call(method, path, body=None, headers=None)`` against the module's server."""

    def _call(method: str, path: str, body: object = None, headers: dict[str, str] | None = None) -> Reply:
        return http_call(backend.base_url, method, path, body, headers)

    return _call
