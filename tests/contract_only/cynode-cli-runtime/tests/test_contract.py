"""The runtime passes cynode's sandbox runtime contract kit, found the way a node finds it: by its entry point."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from importlib.metadata import distribution

import cynode_cli_runtime.plugin
import pytest
from cynode_cli_runtime.runtime import PodmanCliRuntime

from cynode_core.contract import RuntimeFactory
from cynode_core.plugin_manager import ENTRY_POINT_GROUP, get_plugin_manager, plugin_names
from cynode_core.testing import SandboxRuntimeContract


def installed_factories() -> dict[str, RuntimeFactory]:
    """Every runtime factory the installed plugins offer, collected through the hook as the node collects them."""
    pm = get_plugin_manager()
    assert "podman-cli" in plugin_names(pm)
    factories: dict[str, RuntimeFactory] = {}
    pm.hook.cynode_register_sandbox_runtimes(register=factories.setdefault)
    return factories


def test_the_distribution_declares_the_entry_point() -> None:
    declared = [ep for ep in distribution("cynode-cli-runtime").entry_points if ep.group == ENTRY_POINT_GROUP]
    assert [(ep.name, ep.value) for ep in declared] == [("podman-cli", "cynode_cli_runtime.plugin")]
    assert get_plugin_manager().get_plugin("podman-cli") is cynode_cli_runtime.plugin


class TestPodmanCliContract(SandboxRuntimeContract):
    """Every contract case; leftovers are found with the kit's default (the podman CLI, by label)."""

    @pytest.fixture(scope="class")
    @classmethod
    def runtime(cls) -> Iterator[PodmanCliRuntime]:
        if shutil.which("podman") is None:
            pytest.fail("podman is not installed: this runtime runs jobs with the podman command line")
        runtime = installed_factories()["podman-cli"]({})
        assert isinstance(runtime, PodmanCliRuntime)
        yield runtime
        runtime.close()
