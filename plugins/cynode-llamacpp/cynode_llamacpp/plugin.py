"""The hook implementation the ``cynode`` entry point ``llamacpp`` loads."""

from __future__ import annotations

from collections.abc import Mapping

from cynode_core import hookimpl
from cynode_core.contract import InferenceBackend, RegisterBackend

BACKEND_NAME = "llamacpp"


def create_backend(options: Mapping[str, object]) -> InferenceBackend:
    """Build a :class:`~cynode_llamacpp.backend.LlamaCppBackend` from the node's inference options.

    :param options: ``home``, ``model``, ``selected_model`` and optionally
        ``model_path``, ``num_ctx``, ``num_threads``, ``num_predict``, ``port``
        (see :class:`~cynode_llamacpp.settings.LlamaCppSettings`).
    :raises InferenceUnavailable: when an option has an unusable value.
    """
    from cynode_llamacpp.backend import LlamaCppBackend

    return LlamaCppBackend.from_options(options)


@hookimpl
def cynode_register_inference_backends(register: RegisterBackend) -> None:
    """Offer the ``llamacpp`` backend to the node agent."""
    register(BACKEND_NAME, create_backend)
