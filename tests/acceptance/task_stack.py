"""The orchestrator the task and dispatch features run against, and its nodes.

Two ways to run it, both on the test's own migrated PostgreSQL database:

- in this process: the app from conftest's ``orchestrator`` fixture, its
  routes called through the Flask test client, and the real dispatcher
  threads (``cynode_core.orchestrator.dispatch.dispatcher.start_workers``) calling the stub Worker
  APIs over loopback HTTP;
- as a child process: the real ``cynode orchestrator serve`` on free
  loopback ports, for scenarios that stop, restart or SIGKILL it.

Both are driven through :class:`Api` (responses look like Flask's, so
``assert_problem`` works on either). A node is made dispatchable the way a
node agent does it: register with the PSK and a capability naming the stub's
URL as ``worker_api.base_url``, ``GET /v1/nodes/config`` with the node JWT,
then ack ``applied`` with that ``config_version``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from acceptance.stub_worker import StubWorkerApi
from orchestrator_process import CynodeProcess, clean_environ, free_port
from sqlalchemy import text

HTTP_TIMEOUT = 10.0


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# -- responses and the API client ----------------------------------------------


class HttpResponse:
    """A ``requests`` response with the parts of Flask's response interface the steps use."""

    def __init__(self, resp: requests.Response):
        self._resp = resp
        self.status_code = resp.status_code
        self.headers = resp.headers
        self.content_type = resp.headers.get("Content-Type", "")

    def get_data(self, as_text: bool = False) -> Any:
        return self._resp.text if as_text else self._resp.content

    def get_json(self) -> Any:
        return self._resp.json()


class Api:
    """Gateway and control-plane calls; ``token`` adds ``Authorization: Bearer``."""

    def __init__(self, *, client: Any = None, gateway: str = "", control: str = ""):
        self.client = client
        self.gateway = gateway
        self.control = control

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        data: Any = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if self.client is not None:
            kwargs: dict[str, Any] = {"headers": headers}
            if json_body is not None:
                kwargs["json"] = json_body
            elif data is not None:
                kwargs["data"] = data
                kwargs["content_type"] = content_type or "application/json"
            return self.client.open(path, method=method, **kwargs)
        base = self.control if path.startswith("/v1/nodes") else self.gateway
        if data is not None:
            headers.setdefault("Content-Type", content_type or "application/json")
        resp = requests.request(method, base + path, json=json_body, data=data, headers=headers, timeout=HTTP_TIMEOUT)
        return HttpResponse(resp)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.call("POST", path, **kwargs)

    def login(self, handle: str, password: str) -> dict[str, Any]:
        resp = self.post("/v1/auth/login", json_body={"handle": handle, "password": password})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return resp.get_json()


# -- nodes -------------------------------------------------------------------------


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class NodeHandle:
    """A node as the orchestrator knows it, played by the test in front of a stub Worker API."""

    slug: str
    stub: StubWorkerApi
    jwt: str = ""
    config_version: str = ""
    worker_token: str = ""


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


def register(api: Api, psk: str, node: NodeHandle) -> None:
    """``POST /v1/nodes/register`` with the PSK and a capability naming the stub's URL."""
    resp = api.post("/v1/nodes/register", json_body={"psk": psk, "capability": capability(node.slug, node.stub.url)})
    assert resp.status_code in (200, 201), resp.get_data(as_text=True)
    node.jwt = resp.get_json()["auth"]["node_jwt"]


def fetch_config(api: Api, node: NodeHandle) -> None:
    """``GET /v1/nodes/config``; the stub then accepts the delivered Worker API token, as a node would."""
    resp = api.get("/v1/nodes/config", token=node.jwt)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    config = resp.get_json()
    assert config["orchestrator"]["endpoints"]["worker_api_target_url"] == node.stub.url
    node.config_version = config["config_version"]
    node.worker_token = config["worker_api"]["orchestrator_bearer_token"]
    node.stub.token = node.worker_token


def ack(api: Api, node: NodeHandle, status: str) -> None:
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
    resp = api.post("/v1/nodes/config", json_body=body, token=node.jwt)
    assert resp.status_code == 204, resp.get_data(as_text=True)


def make_dispatchable(api: Api, psk: str, node: NodeHandle) -> None:
    register(api, psk, node)
    fetch_config(api, node)
    ack(api, node, "applied")


# -- users ---------------------------------------------------------------------------

USER_PASSWORD = secrets.token_urlsafe(12)


@functools.lru_cache(maxsize=1)
def _password_hash() -> str:
    from cynode_core.orchestrator.services.passwords import hash_password

    return hash_password(USER_PASSWORD)


def create_users(db: Any, *handles: str) -> None:
    """Users with the password ``USER_PASSWORD``, hashed once per run (argon2id is slow on purpose)."""
    from cynode_core.orchestrator.models import PasswordCredential
    from cynode_core.orchestrator.services import accounts
    from cynode_core.orchestrator.services.passwords import HASH_ALG

    with db.session() as session:
        for handle in handles:
            user = accounts.create_user(session, handle, None)
            session.add(PasswordCredential(user_id=user.id, password_hash=_password_hash(), hash_alg=HASH_ALG))


# -- the database, read directly for the assertions ----------------------------------


def rows(db: Any, query: str, **params: Any) -> list[Any]:
    with db.session() as session:
        return list(session.execute(text(query), params).mappings())


def task_status(db: Any, task_id: str) -> str | None:
    found = rows(db, "SELECT status FROM tasks WHERE id = :id", id=task_id)
    return found[0]["status"] if found else None


def jobs_of(db: Any, task_id: str) -> list[Any]:
    return rows(db, "SELECT * FROM jobs WHERE task_id = :id ORDER BY created_at, id", id=task_id)


# -- the dispatcher in this process ------------------------------------------------------


class InProcessDispatcher:
    """The real dispatcher threads of the in-process app; ``stop`` joins them."""

    def __init__(self, state: Any):
        from cynode_core.orchestrator.dispatch.dispatcher import start_workers

        self.state = state
        self.stop_event = threading.Event()
        self.threads = start_workers(state, self.stop_event)
        assert self.threads, "the dispatcher is disabled in the settings"

    def stop(self) -> None:
        self.stop_event.set()
        self.state.dispatcher.wake_all()
        for thread in self.threads:
            # The LISTEN thread notices the stop within its 1 s notify timeout and
            # ends by itself; waiting for it would only slow every scenario down.
            thread.join(timeout=0.05 if thread.name == "dispatch-listen" else 10)
            assert thread.name == "dispatch-listen" or not thread.is_alive(), f"{thread.name} did not stop"


# -- the orchestrator as a child process ---------------------------------------------------


class OrchestratorProcess:
    """``cynode orchestrator serve`` on free loopback ports; restartable, killable, always killed in the end."""

    def __init__(self, *, database_url: str, home: Path, secrets: Any, log_dir: Path, **settings: str):
        self.ports = [free_port(), free_port()]
        self.env = clean_environ(
            CYNODE_DATABASE_URL=database_url,
            CYNODE_HOME=str(home),
            CYNODE_JWT_SECRET=secrets.jwt_secret,
            CYNODE_NODE_PSK=secrets.psk,
            CYNODE_ADMIN_PASSWORD=secrets.admin_password,
            CYNODE_GATEWAY_LISTEN=f"127.0.0.1:{self.ports[0]}",
            CYNODE_CONTROL_LISTEN=f"127.0.0.1:{self.ports[1]}",
            CYNODE_LEASE_SECONDS="3",
            CYNODE_DISPATCH_POLL_INTERVAL="0.2",
            CYNODE_DISPATCH_WORKERS="2",
            CYNODE_LOG_LEVEL="INFO",
            **settings,
        )
        self.log_dir = log_dir
        self.current: CynodeProcess | None = None
        self.all: list[CynodeProcess] = []
        self.api = Api(gateway=f"http://127.0.0.1:{self.ports[0]}", control=f"http://127.0.0.1:{self.ports[1]}")

    def start(self, timeout: float = 60.0) -> float:
        """Start and wait until both ports answer ``/healthz``; returns the monotonic time it became healthy."""
        proc = CynodeProcess(["orchestrator", "serve"], self.env, self.log_dir / f"orchestrator-{len(self.all)}.log")
        self.all.append(proc)
        self.current = proc
        proc.wait_healthy(self.ports, timeout=timeout)
        return time.monotonic()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, leases are left behind."""
        assert self.current is not None
        self.current.proc.kill()
        self.current.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM and wait (killed if it hangs)."""
        assert self.current is not None
        self.current.stop()

    def output(self) -> str:
        return "\n".join(p.output for p in self.all)

    def close(self) -> None:
        for proc in self.all:
            if proc.proc.poll() is None:
                proc.proc.kill()
                proc.proc.wait(timeout=10)
            proc.stop()


def loads(result: str | None) -> Any:
    return None if result is None else json.loads(result)
