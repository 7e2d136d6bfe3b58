"""An orchestrator opened on a test's database and served on loopback, and what tests do with it.

``Served`` is one such orchestrator (its app, its live server and an
:class:`~harness.api.ApiClient` over real HTTP); the ``serve`` fixture in
tests/conftest.py opens as many as a test asks for, each with its own
``CYNODE_*`` environment. Several of them on one database are several
orchestrators sharing the queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.api import ApiClient
from harness.nodes import NodeHandle, ack, fetch_config, register
from harness.orchestrator import USER_PASSWORD, LiveServer, OrchestratorUnderTest
from harness.worker import WorkerNode


@dataclass
class Served:
    """One orchestrator on the test's database, served on loopback; ``db`` and ``state`` are its own."""

    orchestrator: OrchestratorUnderTest
    server: LiveServer
    api: ApiClient
    db: Any = field(init=False)
    state: Any = field(init=False)

    def __post_init__(self) -> None:
        self.db = self.orchestrator.db
        self.state = self.orchestrator.app.extensions["cynode"]

    def close(self) -> None:
        self.server.stop()
        self.orchestrator.close()


def logged_in(served: Served, handle: str) -> str:
    resp = served.api.login(handle, USER_PASSWORD, expect=200)
    return str(resp.json()["access_token"])


def create(served: Served, token: str, command: str, **extra: Any) -> Any:
    return served.api.post("/v1/tasks", json={"prompt": command, "input_mode": "commands", **extra}, token=token)


def one_slot_node(served: Served, worker: WorkerNode, slug: str = "node-01", slots: int = 1) -> NodeHandle:
    """A dispatchable node in front of ``worker`` whose capability offers ``slots`` sandbox slots."""
    node = NodeHandle.of(slug, worker)
    register(served.api, served.orchestrator.secrets.psk, node, sandbox={"supported": True, "max_concurrency": slots})
    fetch_config(served.api, node)
    ack(served.api, node, "applied")
    return node
