"""A runtime defined outside cynode (the podman CLI) passes the same contract kit as the shipped ``podman``."""

from __future__ import annotations

import pytest
from cynode_cli_runtime.runtime import PodmanCliRuntime

from cynode_core.testing import SandboxRuntimeContract


class TestCliRuntimeContract(SandboxRuntimeContract):
    """Every contract case; leftovers are found with the kit's default (podman CLI by label)."""

    @pytest.fixture
    def runtime(self, cli_runtime: PodmanCliRuntime) -> PodmanCliRuntime:
        return cli_runtime
