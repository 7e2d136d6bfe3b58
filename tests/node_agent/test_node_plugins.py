"""The node's plugins: ``CYNODE_DISABLE_PLUGINS`` and the start-up log of what was loaded."""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

import pytest
from harness.processes import free_port
from node_helpers import make_settings

from cynode_core.orchestrator.settings import OrchestratorSettings
from cynode_core.plugin_manager import describe_plugins, get_plugin_manager
from cynode_core.settings import ConfigError, load_settings
from node_agent.manager import run_node
from node_agent.settings import NodeSettings


def test_disable_plugins_is_read_as_the_orchestrator_reads_it() -> None:
    environ = {"CYNODE_DISABLE_PLUGINS": " ollama , llamacpp ,"}
    node = load_settings(NodeSettings, environ=environ)
    assert node.disable_plugins == ["ollama", "llamacpp"]
    assert node.disable_plugins == load_settings(OrchestratorSettings, environ=environ).disable_plugins


def test_a_plugin_from_code_is_described_as_built_in() -> None:
    pm = get_plugin_manager([(object(), "in-code")], load_entry_points=False)
    assert describe_plugins(pm) == ["in-code: built in"]


def test_the_node_logs_each_plugin_with_its_version_and_loads_no_disabled_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="node_agent")
    # Start-up ends at step 2 (no orchestrator answers), after the plugins were loaded and logged.
    settings = make_settings(
        tmp_path,
        disable_plugins="ollama,llamacpp",
        orchestrator_url=f"http://127.0.0.1:{free_port()}",
        readiness_timeout=0.5,
    )
    assert run_node(settings, handle_signals=False) == 1
    version = importlib.metadata.version("cynode-podman")
    assert f"plugin podman: cynode-podman {version}" in caplog.messages
    assert not [m for m in caplog.messages if m.startswith(("plugin ollama", "plugin llamacpp"))]


def test_a_disabled_runtime_plugin_leaves_the_node_without_that_runtime(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, disable_plugins="podman")
    with pytest.raises(ConfigError, match="unknown sandbox runtime 'podman'"):
        run_node(settings, handle_signals=False)
