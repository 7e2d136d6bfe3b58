"""The ``llamacpp`` backend passes cynode's inference contract kit: the bundled model, real HTTP on loopback."""

from __future__ import annotations

import pytest
from cynode_llamacpp.backend import LlamaCppBackend

from cynode_core.testing import InferenceBackendContract, NewBackend


class TestLlamaCppContract(InferenceBackendContract):
    """Every case of the kit; each backend the kit builds loads the model and serves it on its own port."""

    @pytest.fixture(scope="class")
    @classmethod
    def backend_factory(cls, backend_options: dict[str, object]) -> NewBackend:
        return lambda: LlamaCppBackend.from_options(backend_options)
