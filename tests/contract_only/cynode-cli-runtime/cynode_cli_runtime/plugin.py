"""The hook implementation the ``cynode`` entry point names: offers the ``podman-cli`` runtime."""

from __future__ import annotations

from collections.abc import Mapping

from cynode_cli_runtime.runtime import PodmanCliRuntime
from cynode_core.contract import RegisterRuntime, hookimpl

RUNTIME_NAME = "podman-cli"


def create_runtime(options: Mapping[str, object]) -> PodmanCliRuntime:
    """The runtime the node asks for with ``CYNODE_SANDBOX_RUNTIME=podman-cli`` (it needs no options)."""
    return PodmanCliRuntime()


@hookimpl
def cynode_register_sandbox_runtimes(register: RegisterRuntime) -> None:
    register(RUNTIME_NAME, create_runtime)
