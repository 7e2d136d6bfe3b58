"""Fixtures for the node agent tests: real Podman, a real Worker API on loopback.

The sandbox runtime is the real ``podman`` plugin, found through the
``cynode`` entry points exactly as the node agent finds it. These tests
fail, never skip, when Podman, the plugin or the sandbox image is missing.
Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from node_helpers import WORKER_TOKEN, Worker, WorkerFactory, make_settings

from cynode_core.hookspecs import SandboxRuntime
from cynode_core.plugins import get_plugin_manager
from node_agent.executor import JobExecutor
from node_agent.http_server import BackgroundServer
from node_agent.readiness import Readiness, runtime_probe
from node_agent.registry import sandbox_runtime_factories
from node_agent.worker_api import create_worker_app


@pytest.fixture(scope="session", autouse=True)
def _containers_conf() -> None:
    """Podman on these machines needs runc and lowered rlimits (scripts/containers.conf)."""
    if not os.environ.get("CONTAINERS_CONF") and os.path.exists("/etc/cynode/containers.conf"):
        os.environ["CONTAINERS_CONF"] = "/etc/cynode/containers.conf"


@pytest.fixture(scope="session")
def podman_runtime(tmp_path_factory: pytest.TempPathFactory, sandbox_image: str) -> Iterator[SandboxRuntime]:
    """The real ``podman`` runtime (plugin via entry points) with its own Podman service."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed (apt-get install -y podman runc)")
    factories = sandbox_runtime_factories(get_plugin_manager())
    if "podman" not in factories:
        pytest.fail("the cynode-podman plugin is not installed (.venv/bin/pip install -e plugins/cynode-podman)")
    runtime = factories["podman"]({"socket_url": None, "state_dir": str(tmp_path_factory.mktemp("podman-state"))})
    runtime.check(sandbox_image)  # fails loudly when the image is missing
    yield runtime
    runtime.close()


@pytest.fixture(scope="session")
def podman_socket_url(podman_runtime: SandboxRuntime) -> str:
    """URL of the session's Podman service, so node managers under test can share it."""
    service = getattr(podman_runtime, "service", None)
    assert service is not None, "the podman runtime did not start a private service"
    return str(service.url)


@pytest.fixture
def start_worker(podman_runtime: SandboxRuntime, tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start a Worker API on 127.0.0.1 (free port) over real Podman; settings overridable."""
    servers: list[BackgroundServer] = []

    def start(runtime: SandboxRuntime | None = None, **overrides: Any) -> Worker:
        rt = runtime or podman_runtime
        home = Path(overrides.pop("home", tmp_path / f"home-{len(servers)}"))
        settings = make_settings(home, **overrides)
        executor = JobExecutor(rt, settings)
        readiness = Readiness(cache_seconds=0)
        readiness.add_probe(rt.name, runtime_probe(rt, settings.sandbox_image))
        readiness.mark_ready()
        app = create_worker_app(executor, bearer_token=WORKER_TOKEN, readiness=readiness)
        server = BackgroundServer(app, host="127.0.0.1", port=0, threads=settings.job_slots * 2 + 4)
        server.start()
        servers.append(server)
        return Worker(f"http://127.0.0.1:{server.port}", executor, readiness, settings)

    yield start
    for server in servers:
        server.stop(drain_timeout=1.0)


@pytest.fixture
def worker(start_worker: WorkerFactory) -> Worker:
    """A Worker API with default settings (2 slots)."""
    return start_worker()
