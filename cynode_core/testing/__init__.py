"""pytest plugin (entry point ``cynode_runtime_kit``): the contract kits for node plugins.

- :class:`SandboxRuntimeContract` (``runtime_kit``) with the fixtures
  ``sandbox_image`` and ``sandbox_spec_factory`` (``spec_fixtures``): what
  every sandbox runtime must do with a job's container.
- :class:`WarmPath` (``warm_kit``): the same contract on the warm path of a
  runtime that starts containers ahead (``WarmingRuntime``).
- :class:`InferenceBackendContract` (``inference_kit``): what every inference
  backend must answer on its Ollama-compatible API.

A plugin's tests subclass one and provide the fixture it names. Both import
only pytest, the standard library and :mod:`cynode_core.contract`, so they run
where only the contract is installed (``pip install cynode``, no extras).
This module is loaded in every pytest run where cynode is installed, so it
is cheap to import and collects nothing.
"""

from cynode_core.testing.inference_kit import (
    UNKNOWN_MODEL,
    ApiReply,
    InferenceBackendContract,
    NewBackend,
    answers,
    api_call,
)
from cynode_core.testing.runtime_kit import MISSING_IMAGE, SECRET_ENV, SandboxRuntimeContract
from cynode_core.testing.spec_fixtures import (
    DEFAULT_SANDBOX_IMAGE,
    SpecFactory,
    sandbox_image,
    sandbox_spec_factory,
    sh,
)
from cynode_core.testing.warm_kit import WarmPath

__all__ = [
    "WarmPath",
    "DEFAULT_SANDBOX_IMAGE",
    "MISSING_IMAGE",
    "SECRET_ENV",
    "UNKNOWN_MODEL",
    "ApiReply",
    "InferenceBackendContract",
    "NewBackend",
    "SandboxRuntimeContract",
    "SpecFactory",
    "answers",
    "api_call",
    "sandbox_image",
    "sandbox_spec_factory",
    "sh",
]
