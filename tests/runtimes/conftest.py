"""Fixtures for the third-party runtime test: the CLI runtime, built through the hook."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cli_runtime import PodmanCliRuntime, runtime_from_hook


@pytest.fixture(scope="module")
def cli_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanCliRuntime]:
    """The ``podman-cli`` runtime, as a node agent would obtain it from the plugin manager."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: apt-get install -y podman runc (see ENVIRONMENT.md)")
    state_dir: Path = tmp_path_factory.mktemp("cli-node-state")
    runtime = runtime_from_hook({"socket_url": None, "state_dir": str(state_dir)})
    yield runtime
    runtime.close()
