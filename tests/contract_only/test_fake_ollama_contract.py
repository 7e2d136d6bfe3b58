"""The inference contract kit, proved against the fake Ollama server (``fake_ollama``)."""

from __future__ import annotations

import pytest
from fake_ollama import FakeOllamaBackend

from cynode_core.contract import InferenceBackend
from cynode_core.testing import InferenceBackendContract, NewBackend, api_call


class TestFakeOllamaContract(InferenceBackendContract):
    """Every case of the kit, on a backend that starts its own server."""

    @pytest.fixture(scope="class")
    @classmethod
    def backend_factory(cls) -> NewBackend:
        return lambda: FakeOllamaBackend(models=["fake-echo:1b", "Other/Model"])


def test_the_kit_catches_a_backend_that_breaks_the_contract() -> None:
    """A backend whose models() disagrees with its /api/tags fails the kit's case (the kit is not vacuous)."""

    class Misnamed(FakeOllamaBackend):
        def models(self) -> list[str]:
            return [*super().models(), "ghost:7b"]

    broken = Misnamed()
    broken.start()
    try:
        assert isinstance(broken, InferenceBackend)
        with pytest.raises(AssertionError):
            InferenceBackendContract().test_tags_list_what_models_returns(broken)
        assert api_call(broken.base_url, "POST", "/api/generate", {"model": "ghost:7b"}).status == 404
    finally:
        broken.stop()
