"""Helpers shared by the node agent tests (imported by name; fixtures live in conftest.py)."""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from harness.processes import CynodeProcess, clean_environ, free_port
from podman.domain.containers import Container
from podman.domain.containers_manager import ContainersManager

from cynode_core import hookimpl
from cynode_core.contract import InferenceUnavailable, RegisterBackend, SandboxRuntime
from cynode_core.plugin_manager import get_plugin_manager
from cynode_core.settings import load_settings
from node_agent.executor import JobExecutor
from node_agent.manager import NodeManager
from node_agent.readiness import Readiness
from node_agent.registry import sandbox_runtime_factories
from node_agent.settings import NodeSettings

WORKER_TOKEN = "worker-token-for-tests-0123456789"
# What the stub orchestrator of the node manager tests hands out.
NODE_PSK = "node-psk-that-must-never-be-logged"
CONFIG_TOKEN = "worker-token-from-the-node-config"
JOB_LABEL = "cynodeai.job_id"
PROBLEM = "application/problem+json"
# Every key of a RunJobResponse the node sends (docs/wire_contract.md#worker-run-job-response).
RESULT_KEYS = frozenset(
    {"version", "task_id", "job_id", "status", "exit_code", "stdout", "stderr", "started_at", "ended_at", "truncated"}
)


def make_settings(home: Path, **overrides: Any) -> NodeSettings:
    """Node settings for a test: nothing from the real environment, state under ``home``."""
    values: dict[str, Any] = {
        "home": str(home),
        "node_psk": "test-psk-never-logged",
        "inference_backend": "none",
        "worker_listen_host": "127.0.0.1",
        "worker_listen_port": 12090,
    }
    values.update(overrides)
    return load_settings(NodeSettings, environ={}, overrides=values)


@dataclass
class Worker:
    """A running Worker API and what it is built on."""

    url: str
    executor: JobExecutor
    readiness: Readiness
    settings: NodeSettings

    def run(self, body: dict[str, Any], *, token: str | None = WORKER_TOKEN, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return requests.post(f"{self.url}/v1/worker/jobs:run", json=body, headers=headers, timeout=60, **kwargs)

    def cancel(self, job_id: str, *, token: str | None = WORKER_TOKEN) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return requests.post(f"{self.url}/v1/worker/jobs/{job_id}:cancel", headers=headers, timeout=30)

    @property
    def workspace_root(self) -> Path:
        return self.settings.resolved_workspace_root

    @property
    def jobs_dir(self) -> Path:
        return self.settings.resolved_state_dir / "jobs"


WorkerFactory = Callable[..., Worker]


def new_podman_runtime(state_dir: Path) -> SandboxRuntime:
    """The real ``podman`` runtime (plugin found through the entry points) with a Podman service of its own."""
    factories = sandbox_runtime_factories(get_plugin_manager())
    if "podman" not in factories:
        pytest.fail("the cynode-podman plugin is not installed (.venv/bin/pip install -e plugins/cynode-podman)")
    return factories["podman"]({"socket_url": None, "state_dir": str(state_dir)})


def assert_problem(
    response: requests.Response,
    status: int,
    detail: str | None = None,
    *,
    kind: str | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """``response`` is problem details (RFC 9457) with ``status`` (and ``detail``, when given).

    With ``kind`` the type must be ``urn:cynodeai:error:<kind>``; with
    ``kind``, ``title`` and ``detail`` the body must be exactly those four members.
    """
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:cynodeai:error:")
    if detail is not None:
        assert body["detail"] == detail
    if kind is not None:
        assert body["type"] == f"urn:cynodeai:error:{kind}", body
    if title is not None:
        assert body["title"] == title, body
    if kind is not None and title is not None and detail is not None:
        assert set(body) == {"type", "title", "status", "detail"}, body
    return body


def containers_of(runtime: SandboxRuntime, job_id: str) -> list[str]:
    """Containers of any state labelled with ``job_id`` (the podman plugin labels every job)."""
    client = runtime.client  # type: ignore[attr-defined]
    found = client.containers.list(all=True, filters={"label": f"{JOB_LABEL}={job_id}"})
    return [c.id for c in found]


def nothing_created(worker: Worker) -> bool:
    """Nothing exists under the worker's workspace root or its job records."""
    root, jobs = worker.workspace_root, worker.jobs_dir
    return (not root.exists() or not any(root.iterdir())) and (not jobs.exists() or not any(jobs.iterdir()))


def job_body(command: list[str] | None = None, **sandbox: Any) -> dict[str, Any]:
    """A valid RunJobRequest with fresh UUIDs."""
    sandbox.setdefault("command", command if command is not None else ["sh", "-c", "echo hello"])
    return {"version": 1, "task_id": str(uuid.uuid4()), "job_id": str(uuid.uuid4()), "sandbox": sandbox}


def run_in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Call ``fn`` in a thread; its return value lands in ``box["result"]``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # surfaced by the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def start_node_process(
    orchestrator_url: str, home: Path, podman_socket_url: str, **settings: str
) -> tuple[CynodeProcess, int]:
    """``cynode node serve`` as a child process (inference ``none`` unless set); returns it and its Worker API port.

    ``settings`` are extra ``CYNODE_*`` variables. The child gets nothing else
    of this process's cynode settings (see ``clean_environ``).
    """
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    env = clean_environ(
        CYNODE_HOME=str(home),
        CYNODE_ORCHESTRATOR_URL=orchestrator_url,
        CYNODE_NODE_PSK=NODE_PSK,
        CYNODE_INFERENCE_BACKEND="none",
        CYNODE_WORKER_LISTEN_HOST="127.0.0.1",
        CYNODE_WORKER_LISTEN_PORT=str(port),
        CYNODE_PODMAN_SOCKET=podman_socket_url,
        **settings,
    )
    return CynodeProcess(["node", "serve"], env, home / "node.log", "node").start(), port


def start_manager(settings: NodeSettings, plugin_manager: Any) -> tuple[NodeManager, threading.Thread, dict[str, Any]]:
    """A Node Manager running in a thread; its exit code lands in ``box["result"]``."""
    manager = NodeManager(settings, plugin_manager=plugin_manager)
    thread, box = run_in_thread(manager.run)
    return manager, thread, box


# ------------------------------------------------------------ test backends


class BackendEvents:
    """What the test backends saw, shared with the test."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float, Any]] = []
        self.worker_port = 0

    def add(self, name: str, detail: Any = None) -> None:
        self.events.append((name, time.monotonic(), detail))

    def when(self, name: str) -> float:
        return next(at for event, at, _ in self.events if event == name)


class StubBackend:
    """A TEST inference backend: becomes healthy a moment after start, probing the Worker API meanwhile."""

    name = "stub"

    def __init__(self, options: dict[str, object], events: BackendEvents) -> None:
        self.options = options
        self._events = events

    def start(self) -> None:
        base = f"http://127.0.0.1:{self._events.worker_port}"
        self._events.add(
            "start",
            {
                "healthz": requests.get(f"{base}/healthz", timeout=5).status_code,
                "readyz": requests.get(f"{base}/readyz", timeout=5).status_code,
            },
        )
        time.sleep(0.5)  # "becomes healthy" later than it was started
        self._events.add("healthy")

    @property
    def base_url(self) -> str:
        return "http://127.0.0.1:11434"

    def models(self) -> list[str]:
        return ["tiny:1b"]

    def stop(self) -> None:
        self._events.add("stop")


class BrokenBackend(StubBackend):
    """A TEST inference backend that cannot start (its ``start()`` raises)."""

    name = "broken"

    def start(self) -> None:
        base = f"http://127.0.0.1:{self._events.worker_port}"
        self._events.add("start", {"readyz": requests.get(f"{base}/readyz", timeout=5).status_code})
        raise InferenceUnavailable("no Ollama server answers at http://127.0.0.1:9")


class BackendsPlugin:
    """Registers the test backends ``stub`` and ``broken`` through the real hook."""

    def __init__(self, events: BackendEvents) -> None:
        self.events = events

    @hookimpl
    def cynode_register_inference_backends(self, register: RegisterBackend) -> None:
        register("stub", lambda options: StubBackend(dict(options), self.events))
        register("broken", lambda options: BrokenBackend(dict(options), self.events))


# ------------------------------------------------------- container records


class ContainerRecords:
    """Podman's own record (``inspect``) of every container created while installed, by job id.

    The podman plugin creates each job's container with podman-py's
    ``ContainersManager.create``; wrapping it keeps the record of containers
    too short-lived to be listed, and proves that no container was created.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original = ContainersManager.create
        records = self

        def create(manager: ContainersManager, *args: Any, **kwargs: Any) -> Any:
            container = original(manager, *args, **kwargs)
            labels = container.attrs.get("Config", {}).get("Labels") or {}
            with records._lock:
                records._by_job[labels.get(JOB_LABEL, "")].append(copy.deepcopy(container.attrs))
            return container

        original_rename = Container.rename

        def rename(container: Container, name: str) -> None:
            original_rename(container, name)
            # A warm container (no job label) that took a job is that job's from now on.
            job_id = name.removeprefix("cynode-job-") if name.startswith("cynode-job-") else ""
            with records._lock:
                waiting = records._by_job.get("", [])
                for record in [r for r in waiting if r.get("Id") == container.id]:
                    waiting.remove(record)
                    records._by_job[job_id].append(record)

        monkeypatch.setattr(ContainersManager, "create", create)
        monkeypatch.setattr(Container, "rename", rename)

    def of(self, job_id: str) -> list[dict[str, Any]]:
        """Records of the containers created for ``job_id``."""
        with self._lock:
            return list(self._by_job.get(job_id, []))

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [record for records in self._by_job.values() for record in records]

    def job_containers(self) -> list[dict[str, Any]]:
        """Records of job containers (the runtime's start-up checks and warm containers still waiting excluded)."""
        with self._lock:
            return [r for job, records in self._by_job.items() if job and not job.startswith("check-") for r in records]
