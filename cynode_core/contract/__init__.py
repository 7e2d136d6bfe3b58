"""The plugin contract: what a plugin author, the node agent and the orchestrator share.

Import the value types and errors from here (``from cynode_core.contract
import SandboxSpec, RuntimeUnavailable``); the hook specifications are in
``cynode_core.contract.hookspecs`` and the typed job contract in
``cynode_core.contract.job``. Nothing in this package imports a web
framework or a database driver, so a runtime or inference plugin installs
and tests against it alone.
"""

from cynode_core import hookimpl
from cynode_core.contract.blobs import (
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobStoreFactory,
    BlobStoreUnavailable,
    BlobTooLarge,
    RegisterBlobStore,
)
from cynode_core.contract.errors import (
    Conflict,
    CynodeError,
    InferenceUnavailable,
    InvalidInput,
    JobNotStarted,
    NotAuthenticated,
    NotFound,
    NotPermitted,
    RateLimited,
    RuntimeUnavailable,
    TooLarge,
    Unavailable,
)
from cynode_core.contract.values import (
    BackendFactory,
    ExitSink,
    Identity,
    InferenceBackend,
    InferenceInfo,
    JobInfo,
    LeftoverJob,
    Mount,
    NodeCandidate,
    OutputSink,
    RegisterBackend,
    RegisterRuntime,
    RuntimeFactory,
    SandboxOutcome,
    SandboxRuntime,
    SandboxSpec,
    SweepingRuntime,
    TaskEvent,
    is_loopback_host,
    normalize_model_name,
)
from cynode_core.contract.warm import WarmingRuntime, WarmKey, WarmSandbox, WarmStartFailed, warm_key

__all__ = [
    "BackendFactory",
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "BlobStoreFactory",
    "BlobStoreUnavailable",
    "BlobTooLarge",
    "RegisterBlobStore",
    "Conflict",
    "CynodeError",
    "Identity",
    "InferenceBackend",
    "InferenceUnavailable",
    "InvalidInput",
    "InferenceInfo",
    "JobInfo",
    "JobNotStarted",
    "LeftoverJob",
    "WarmKey",
    "WarmSandbox",
    "WarmStartFailed",
    "WarmingRuntime",
    "warm_key",
    "Mount",
    "NodeCandidate",
    "NotAuthenticated",
    "NotFound",
    "NotPermitted",
    "RateLimited",
    "RegisterBackend",
    "RegisterRuntime",
    "RuntimeFactory",
    "RuntimeUnavailable",
    "SandboxOutcome",
    "SandboxRuntime",
    "ExitSink",
    "OutputSink",
    "SandboxSpec",
    "SweepingRuntime",
    "TaskEvent",
    "TooLarge",
    "Unavailable",
    "hookimpl",
    "is_loopback_host",
    "normalize_model_name",
]
