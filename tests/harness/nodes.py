"""A node played by the test against the real control plane, the way a node agent does it.

Register with the PSK and a capability naming the node's Worker API URL
(``worker_api.base_url``), ``GET /v1/nodes/config`` with the node JWT, then
ack that ``config_version`` as ``applied`` (or ``failed``). When the node has
a :class:`~harness.worker.WorkerNode` behind it, the Worker API token of the
fetched config is handed to it, as the node agent does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from harness.api import ApiClient


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def capability(slug: str, worker_url: str, max_concurrency: int = 2) -> dict[str, Any]:
    return {
        "version": 1,
        "reported_at": now_rfc3339(),
        "node": {"node_slug": slug, "name": slug},
        "platform": {"os": "linux", "arch": "amd64"},
        "compute": {"cpu_cores": 2, "ram_mb": 2048},
        "gpu": {"present": False},
        "sandbox": {"supported": True, "max_concurrency": max_concurrency},
        "worker_api": {"base_url": worker_url},
    }


@dataclass
class NodeHandle:
    """A node as the orchestrator knows it; ``worker`` (a ``WorkerNode``) is its Worker API, if it has one."""

    slug: str
    url: str
    worker: Any = None
    jwt: str = ""
    config_version: str = ""
    worker_token: str = ""

    @classmethod
    def of(cls, slug: str, worker: Any) -> NodeHandle:
        return cls(slug, worker.url, worker)


def register(control: ApiClient, psk: str, node: NodeHandle, **cap: Any) -> None:
    """``POST /v1/nodes/register`` with the PSK and a capability naming the node's URL (``cap`` replaces parts)."""
    body = {"psk": psk, "capability": {**capability(node.slug, node.url), **cap}}
    resp = control.post("/v1/nodes/register", json=body)
    assert resp.status_code in (200, 201), resp.text
    node.jwt = resp.json()["auth"]["node_jwt"]


def fetch_config(control: ApiClient, node: NodeHandle) -> None:
    """``GET /v1/nodes/config``; the node's Worker API then accepts the delivered token."""
    resp = control.get("/v1/nodes/config", token=node.jwt)
    assert resp.status_code == 200, resp.text
    config = resp.json()
    assert config["orchestrator"]["endpoints"]["worker_api_target_url"] == node.url
    node.config_version = config["config_version"]
    node.worker_token = config["worker_api"]["orchestrator_bearer_token"]
    if node.worker is not None:
        node.worker.set_token(node.worker_token)


def ack(control: ApiClient, node: NodeHandle, status: str) -> None:
    """``POST /v1/nodes/config``: ack the fetched ``config_version`` as ``applied`` or ``failed``."""
    body: dict[str, Any] = {
        "version": 1,
        "node_slug": node.slug,
        "config_version": node.config_version,
        "ack_at": now_rfc3339(),
        "status": status,
    }
    if status == "failed":
        body["error"] = {"type": "apply", "message": "could not apply the configuration"}
    resp = control.post("/v1/nodes/config", json=body, token=node.jwt)
    assert resp.status_code == 204, resp.text


def make_dispatchable(control: ApiClient, psk: str, node: NodeHandle) -> NodeHandle:
    register(control, psk, node)
    fetch_config(control, node)
    ack(control, node, "applied")
    return node
