"""The ``ollama`` backend passes cynode's inference contract kit, against a real Ollama-API server.

The server is the embedded llamacpp backend with the real model (see
``conftest.py``); the ``ollama`` backend did not start it, so its ``stop()``
must leave it answering.
"""

from __future__ import annotations

import pytest
from cynode_ollama.backend import OllamaBackend

from cynode_core.testing import InferenceBackendContract, NewBackend


class TestOllamaContract(InferenceBackendContract):
    """Every case of the kit; ``base_url`` is the server's, which keeps running after ``stop()``."""

    starts_its_server = False

    @pytest.fixture(scope="class")
    @classmethod
    def backend_factory(cls, backend_options: dict[str, object]) -> NewBackend:
        return lambda: OllamaBackend.from_options(backend_options)
