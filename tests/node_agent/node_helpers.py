"""Helpers shared by the node agent tests (imported by name; fixtures live in conftest.py)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from cynode_core.config import load_settings
from node_agent.config import NodeSettings
from node_agent.executor import JobExecutor
from node_agent.readiness import Readiness

WORKER_TOKEN = "worker-token-for-tests-0123456789"


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
