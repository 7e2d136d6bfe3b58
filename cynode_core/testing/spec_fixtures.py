"""The jobs the sandbox runtime kits run: their image, a factory of fresh specs, and ``sh``.

The fixtures ``sandbox_image`` and ``sandbox_spec_factory`` reach pytest
through ``cynode_core.testing``, the plugin module, which imports them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from cynode_core.contract import SandboxSpec

DEFAULT_SANDBOX_IMAGE = "localhost/cynode-sandbox:busybox"
SpecFactory = Callable[..., SandboxSpec]


@pytest.fixture(scope="session")
def sandbox_image() -> str:
    """The image the contract tests run (override the fixture or set ``CYNODE_SANDBOX_IMAGE``)."""
    return os.environ.get("CYNODE_SANDBOX_IMAGE", DEFAULT_SANDBOX_IMAGE)


@pytest.fixture
def sandbox_spec_factory(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory) -> SpecFactory:
    """Build a :class:`SandboxSpec` with fresh ids and a fresh workspace writable by any uid."""

    def make(command: list[str], **overrides: Any) -> SandboxSpec:
        job_id, task_id = str(uuid.uuid4()), str(uuid.uuid4())
        workspace = tmp_path_factory.mktemp("workspace")
        workspace.chmod(0o777)  # the job runs as nobody (65534)
        env = {"CYNODE_TASK_ID": task_id, "CYNODE_JOB_ID": job_id, "CYNODE_WORKSPACE_DIR": "/workspace"}
        values: dict[str, Any] = {
            "job_id": job_id,
            "task_id": task_id,
            "image": sandbox_image,
            "command": command,
            "env": env,
            "workspace_dir": str(workspace),
            "timeout_seconds": 30,
            "max_output_bytes": 262144,
        }
        values.update(overrides)
        return SandboxSpec(**values)

    return make


def sh(script: str) -> list[str]:
    """argv running ``script`` with ``sh -c``."""
    return ["sh", "-c", script]
