"""The hook implementation the ``cynode`` entry point ``podman`` loads."""

from __future__ import annotations

from collections.abc import Mapping

from cynode_core import hookimpl
from cynode_core.contract import RegisterRuntime, SandboxRuntime

RUNTIME_NAME = "podman"


def create_runtime(options: Mapping[str, object]) -> SandboxRuntime:
    """Build a :class:`~cynode_podman.runtime.PodmanRuntime` from the node's runtime options.

    :param options: ``socket_url`` (an existing Podman REST socket, or ``None``
        to start a private ``podman system service``) and ``state_dir``.
    """
    # Imported here so that loading entry points does not import podman-py.
    from cynode_podman.runtime import PodmanRuntime

    return PodmanRuntime.from_options(options)


@hookimpl
def cynode_register_sandbox_runtimes(register: RegisterRuntime) -> None:
    """Offer the ``podman`` runtime to the node agent."""
    register(RUNTIME_NAME, create_runtime)
