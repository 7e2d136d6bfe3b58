"""The embedded llama.cpp backend with the bundled model, started for a test module (a real model on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cynode_llamacpp.backend import LlamaCppBackend
from cynode_llamacpp.model_file import ensure_bundled_model

MODEL = "gemma3:270m"


@contextmanager
def llama_backend(home: Path) -> Iterator[LlamaCppBackend]:
    """A started backend serving :data:`MODEL` on an Ollama-compatible loopback URL (``.base_url``)."""
    ensure_bundled_model(home / "models")
    options = {
        "home": str(home),
        "model": None,
        "selected_model": MODEL,
        "ollama_url": "http://127.0.0.1:11434",
        "state_dir": str(home),
    }
    backend = LlamaCppBackend.from_options(options)
    backend.start()
    try:
        yield backend
    finally:
        backend.stop()
