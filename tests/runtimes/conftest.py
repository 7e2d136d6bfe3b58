"""Fixtures for the third-party runtime test: the ``podman-cli`` runtime, picked by the node agent's registry.

The runtime is the distribution in ``tests/contract_only/cynode-cli-runtime``
(``tox -e contract`` installs it and runs its own tests in a contract-only
environment). Here, in the full installation, it is imported from its source
directory when it is not installed, registered next to the installed plugins
and picked by name exactly as a node with ``CYNODE_SANDBOX_RUNTIME=podman-cli``
picks it.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cynode_core.plugin_manager import get_plugin_manager
from node_agent.registry import pick, sandbox_runtime_factories

DISTRIBUTION = Path(__file__).resolve().parents[1] / "contract_only" / "cynode-cli-runtime"
if importlib.util.find_spec("cynode_cli_runtime") is None:
    sys.path.insert(0, str(DISTRIBUTION))

from cynode_cli_runtime import plugin  # noqa: E402 - importable only after the path above
from cynode_cli_runtime.runtime import PodmanCliRuntime  # noqa: E402


@pytest.fixture(scope="module")
def cli_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanCliRuntime]:
    """The ``podman-cli`` runtime, as a node agent obtains it from the plugin manager."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: apt-get install -y podman runc (see ENVIRONMENT.md)")
    pm = get_plugin_manager([(plugin, plugin.RUNTIME_NAME)])
    factories = sandbox_runtime_factories(pm)
    factory = pick(factories, "podman-cli", kind="sandbox runtime", setting="CYNODE_SANDBOX_RUNTIME")
    state_dir: Path = tmp_path_factory.mktemp("cli-node-state")
    runtime = factory({"socket_url": None, "state_dir": str(state_dir)})
    assert isinstance(runtime, PodmanCliRuntime)
    yield runtime
    runtime.close()
