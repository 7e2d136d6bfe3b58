"""The hook implementation the ``cynode`` entry point ``ollama`` loads."""

from __future__ import annotations

from collections.abc import Mapping

from cynode_core import hookimpl
from cynode_core.contract import InferenceBackend, RegisterBackend

BACKEND_NAME = "ollama"


def create_backend(options: Mapping[str, object]) -> InferenceBackend:
    """Build an :class:`~cynode_ollama.backend.OllamaBackend` from the node's inference options.

    :param options: ``ollama_url`` (the existing server), ``model`` and
        ``selected_model`` (models that must be present), optionally
        ``start_timeout`` and ``request_timeout`` in seconds.
    """
    from cynode_ollama.backend import OllamaBackend

    return OllamaBackend.from_options(options)


@hookimpl
def cynode_register_inference_backends(register: RegisterBackend) -> None:
    """Offer the ``ollama`` backend to the node agent."""
    register(BACKEND_NAME, create_backend)
