"""A runtime defined outside cynode (the podman CLI) passes the same contract kit."""

from __future__ import annotations

import pytest

from cynode_core.testing import SandboxRuntimeContract

from .cli_runtime import PodmanCliRuntime


class TestCliRuntimeContract(SandboxRuntimeContract):
    """Every contract case; leftovers are found with the kit's default (podman CLI by label)."""

    @pytest.fixture
    def runtime(self, cli_runtime: PodmanCliRuntime) -> PodmanCliRuntime:
        return cli_runtime
