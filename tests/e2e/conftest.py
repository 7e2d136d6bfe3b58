"""End-to-end fixtures: real orchestrator and node processes on a test database."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.api import ApiClient
from harness.processes import SANDBOX_IMAGE, CynodeProcess, Node, Orchestrator, orchestrator_environ

from node_agent.quota_mount import unmount


@pytest.fixture(scope="session", autouse=True)
def _podman_present() -> None:
    """These tests need real Podman and the sandbox image; bootstrap installs both. Never skip."""
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", "/etc/cynode/containers.conf")
    result = subprocess.run(["podman", "image", "exists", SANDBOX_IMAGE], env=env, capture_output=True)
    assert result.returncode == 0, f"sandbox image {SANDBOX_IMAGE} missing: run ./scripts/bootstrap"


class Cluster:
    """Processes started by a test; all are stopped (or killed) at teardown."""

    def __init__(self, tmp: Path, database_url: str, secrets: Any):
        self.tmp = tmp
        self.database_url = database_url
        self.secrets = secrets
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = orchestrator_environ(
            database_url,
            tmp / "home",
            secrets,
            CYNODE_DISPATCH_WORKERS="8",
            CYNODE_DISPATCH_POLL_INTERVAL="0.2",
        )
        self.procs: list[CynodeProcess] = []

    def orchestrator(self, name: str = "orchestrator", **settings: str) -> Orchestrator:
        proc = Orchestrator(self.env, self.logs, name, **settings)
        self.procs.append(proc)
        return proc

    def node(self, slug: str, orchestrator: Orchestrator, **settings: str) -> Node:
        env = {**self.env, "CYNODE_HOME": str(self.tmp / f"home-{slug}")}
        proc = Node(slug, env, self.logs, orchestrator, **settings)
        self.procs.append(proc)
        return proc

    def process(self, name: str, *args: str) -> CynodeProcess:
        """Any other ``cynode`` command on the cluster's environment (not started)."""
        proc = CynodeProcess(list(args), self.env, self.logs / f"{name}.log", name)
        self.procs.append(proc)
        return proc

    def admin(self, orchestrator: Orchestrator) -> ApiClient:
        """A client of ``orchestrator``'s gateway, logged in as the bootstrap admin."""
        api = ApiClient(orchestrator.gateway)
        api.login("admin", self.secrets.admin_password, expect=200)
        return api

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout=20)
        # Belt and braces: a node's Podman service dies with its agent (lifeline), but a
        # test must not leak one if that ever breaks.
        from cynode_podman.service import _stop_leftover

        for pid_file in self.tmp.glob("home-*/**/service.pid"):
            _stop_leftover(pid_file)
        # A node killed and never restarted leaves its jobs' workspace quota mounts;
        # the next start of that node would unmount them, the test ends instead.
        for target in mounts_under(self.tmp):
            unmount(target)


def mounts_under(root: Path) -> list[Path]:
    """Mount points below ``root``, deepest first (octal escapes of /proc/self/mounts decoded)."""
    prefix = str(root.resolve()) + "/"
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split(" ")[1].encode().decode("unicode_escape")
        if point.startswith(prefix):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


@pytest.fixture
def cluster(tmp_path: Path, database_url: str, test_secrets: Any) -> Iterator[Cluster]:
    c = Cluster(tmp_path, database_url, test_secrets)
    yield c
    c.stop_all()
