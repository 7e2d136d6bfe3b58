"""The shared sandbox runtime contract, run against ``PodmanRuntime``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cynode_podman.runtime import PodmanRuntime

from cynode_core.testing import SandboxRuntimeContract


class TestPodmanRuntimeContract(SandboxRuntimeContract):
    """Every contract case, on the session's Podman service."""

    follows_output = True
    tells_exit = True

    @pytest.fixture
    def runtime(self, podman_runtime: PodmanRuntime, job_container_ids: Callable[[str], list[str]]) -> PodmanRuntime:
        # Leftovers are looked up through the runtime's own client, not the CLI.
        self._job_container_ids = job_container_ids
        return podman_runtime

    def job_containers(self, job_id: str) -> list[str]:
        return self._job_container_ids(job_id)
