"""Fixtures for the cynode-podman tests: one real Podman service for the whole session.

These tests need podman (with runc) and the sandbox image; they fail, never
skip, when either is missing, so a broken machine cannot pass them silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest
from cynode_podman.container_config import container_name
from cynode_podman.runtime import PodmanRuntime
from cynode_podman.service import service_env

from cynode_core.testing import SECRET_ENV


@pytest.fixture(scope="session")
def podman_env() -> dict[str, str]:
    """Environment for podman CLI calls made by the tests themselves."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: apt-get install -y podman runc (see ENVIRONMENT.md)")
    return service_env()


@pytest.fixture(scope="session")
def podman_runtime(
    podman_env: dict[str, str], sandbox_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PodmanRuntime]:
    """A runtime with its own ``podman system service`` on a temporary state dir."""
    found = subprocess.run(["podman", "image", "exists", sandbox_image], env=podman_env, check=False)
    if found.returncode != 0:
        pytest.fail(f"sandbox image {sandbox_image} is missing: run scripts/build-sandbox-image")
    runtime = PodmanRuntime(state_dir=tmp_path_factory.mktemp("node-state"))
    # The service starts with a secret in our environment: it must not reach any job.
    os.environ[SECRET_ENV] = "cynode-secret-that-must-not-leak"
    try:
        runtime.version()
    finally:
        del os.environ[SECRET_ENV]
    yield runtime
    runtime.close()


@pytest.fixture(scope="session")
def job_container_ids(podman_runtime: PodmanRuntime) -> Callable[[str], list[str]]:
    """Ids of containers of any state labelled with a job id, or named for it (a warm one), through podman-py."""

    def ids(job_id: str) -> list[str]:
        containers = podman_runtime.client.containers
        found = containers.list(all=True, filters={"label": f"cynodeai.job_id={job_id}"})
        found += containers.list(all=True, filters={"name": f"^{container_name(job_id)}$"})
        return sorted({container.id for container in found})

    return ids
