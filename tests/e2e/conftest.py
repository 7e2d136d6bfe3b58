"""End-to-end fixtures: real orchestrator and node processes on a test database."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.procs import SANDBOX_IMAGE, Node, Orchestrator, Proc


@pytest.fixture(scope="session", autouse=True)
def _podman_present() -> None:
    """These tests need real Podman and the sandbox image; bootstrap installs both. Never skip."""
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", "/etc/cynode/containers.conf")
    result = subprocess.run(["podman", "image", "exists", SANDBOX_IMAGE], env=env, capture_output=True)
    assert result.returncode == 0, f"sandbox image {SANDBOX_IMAGE} missing: run ./scripts/bootstrap"


class Cluster:
    """Processes started by a test; all are stopped (or killed) at teardown."""

    def __init__(self, tmp: Path, database_url: str, secrets):  # type: ignore[no-untyped-def]
        self.tmp = tmp
        self.secrets = secrets
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CYNODE_")}
        self.env.update(
            {
                "CYNODE_DATABASE_URL": database_url,
                "CYNODE_HOME": str(tmp / "home"),
                "CYNODE_JWT_SECRET": secrets.jwt_secret,
                "CYNODE_NODE_PSK": secrets.psk,
                "CYNODE_ADMIN_PASSWORD": secrets.admin_password,
                "CYNODE_DISPATCH_WORKERS": "8",
                "CYNODE_DISPATCH_POLL_INTERVAL": "0.2",
            }
        )
        self.env.setdefault("CONTAINERS_CONF", "/etc/cynode/containers.conf")
        self.procs: list[Proc] = []

    def orchestrator(self, name: str = "orchestrator", **settings: str) -> Orchestrator:
        proc = Orchestrator(name, self.env, self.logs, **settings)
        self.procs.append(proc)
        return proc

    def node(self, slug: str, orchestrator: Orchestrator, **settings: str) -> Node:
        env = dict(self.env)
        env["CYNODE_HOME"] = str(self.tmp / f"home-{slug}")
        proc = Node(slug, env, self.logs, orchestrator, **settings)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout=20)
        # A node killed with SIGKILL leaves its Podman service (own session) behind.
        from cynode_podman.service import _stop_leftover

        for pid_file in self.tmp.glob("home-*/**/service.pid"):
            _stop_leftover(pid_file)


@pytest.fixture
def cluster(tmp_path: Path, database_url: str, test_secrets) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]
    c = Cluster(tmp_path, database_url, test_secrets)
    yield c
    c.stop_all()
