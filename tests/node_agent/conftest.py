"""Fixtures for the node agent tests: real Podman, a real Worker API on loopback.

The sandbox runtime is the real ``podman`` plugin, found through the
``cynode`` entry points exactly as the node agent finds it. These tests
fail, never skip, when Podman, the plugin or the sandbox image is missing.
Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.processes import free_port
from node_helpers import (
    CONFIG_TOKEN,
    NODE_PSK,
    WORKER_TOKEN,
    BackendEvents,
    BackendsPlugin,
    ContainerRecords,
    Worker,
    WorkerFactory,
    make_settings,
    new_podman_runtime,
)
from stub_orchestrator import StubOrchestrator

from cynode_core.contract import InferenceBackend, SandboxRuntime
from cynode_core.plugin_manager import get_plugin_manager
from node_agent.executor import JobExecutor
from node_agent.http_server import BackgroundServer
from node_agent.readiness import Readiness, runtime_probe
from node_agent.registry import inference_backend_factories
from node_agent.settings import NodeSettings
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
    runtime = new_podman_runtime(tmp_path_factory.mktemp("podman-state"))
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


@pytest.fixture
def container_records(monkeypatch: pytest.MonkeyPatch) -> ContainerRecords:
    """Podman's record of every container the test's runtimes create (see ``ContainerRecords``)."""
    records = ContainerRecords()
    records.install(monkeypatch)
    return records


# ------------------------------------------------------------ node managers


@pytest.fixture
def stub() -> Iterator[StubOrchestrator]:
    """The STUB orchestrator on loopback (tests/node_agent/stub_orchestrator.py)."""
    orchestrator = StubOrchestrator(psk=NODE_PSK, worker_token=CONFIG_TOKEN)
    orchestrator.start()
    yield orchestrator
    orchestrator.stop()


@pytest.fixture
def events() -> BackendEvents:
    return BackendEvents()


@pytest.fixture
def plugin_manager(events: BackendEvents) -> Any:
    """Entry points give the real plugins (podman, llamacpp, ollama); the test backends come as a built-in."""
    return get_plugin_manager([(BackendsPlugin(events), "test-backends")])


@pytest.fixture
def node_settings(
    tmp_path: Path, stub: StubOrchestrator, podman_socket_url: str, events: BackendEvents
) -> Callable[..., NodeSettings]:
    """Settings of a node agent talking to ``stub``, its Worker API on a free loopback port."""

    def build(**overrides: Any) -> NodeSettings:
        home = overrides.pop("home", tmp_path / "home")
        port = free_port()
        events.worker_port = port
        values: dict[str, Any] = {
            "orchestrator_url": stub.url,
            "node_psk": NODE_PSK,
            "node_slug": "node-01",
            "worker_listen_port": port,
            "podman_socket": podman_socket_url,
            "readiness_timeout": 10,
            "capability_report_interval": 0.5,
            "inference_backend": "stub",
        }
        values.update(overrides)
        return make_settings(home, **values)

    return build


# ------------------------------------------------------- the real inference backend


@pytest.fixture(scope="session")
def llamacpp_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``CYNODE_HOME`` for llamacpp backends; the bundled model is assembled into it once."""
    return tmp_path_factory.mktemp("llamacpp-home")


@pytest.fixture(scope="session")
def real_backend(llamacpp_home: Path) -> Iterator[InferenceBackend]:
    """The REAL embedded llama.cpp backend (entry point ``llamacpp``), built as the node manager builds it."""
    factories = inference_backend_factories(get_plugin_manager())
    if "llamacpp" not in factories:
        pytest.fail(
            "the llamacpp inference backend plugin is not installed (.venv/bin/pip install -e plugins/cynode-llamacpp)"
        )
    settings = make_settings(llamacpp_home, inference_backend="llamacpp")
    backend = factories["llamacpp"](settings.inference_options())
    backend.start()
    try:
        assert backend.models(), "the llamacpp backend serves no model"
        yield backend
    finally:
        backend.stop()


@pytest.fixture(scope="session")
def real_model(real_backend: InferenceBackend) -> str:
    return real_backend.models()[0]


@pytest.fixture
def ctx() -> dict[str, Any]:
    """State carried between the steps of one scenario (the features under features/worker_node)."""
    return {}
