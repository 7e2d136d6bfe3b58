"""The shared sandbox runtime contract, run against ``PodmanRuntime``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cynode_podman.runtime import PodmanRuntime

from cynode_core.testing import SandboxRuntimeContract, SpecFactory, WarmPath


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


class TestPodmanWarmContract(SandboxRuntimeContract):
    """Every contract case again, each job in a container started before it (``WarmPath``)."""

    follows_output = True
    tells_exit = True

    @pytest.fixture
    def runtime(self, podman_runtime: PodmanRuntime, job_container_ids: Callable[[str], list[str]]) -> WarmPath:
        self._job_container_ids = job_container_ids
        return WarmPath(podman_runtime)

    def job_containers(self, job_id: str) -> list[str]:
        return self._job_container_ids(job_id)

    def test_jobs_take_the_warm_path(self, runtime: WarmPath, sandbox_spec_factory: SpecFactory) -> None:
        self.run_ok(runtime, sandbox_spec_factory(["true"]))
        assert runtime.warm_runs == 1
