"""Real cynode processes for end-to-end tests: orchestrators and node agents.

Each is a ``python -m cynode_core ...`` child with its own environment, log
file and loopback ports; ``kill9`` sends SIGKILL, ``stop`` SIGTERM. Every
wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

SANDBOX_IMAGE = "localhost/cynode-sandbox:busybox"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except requests.RequestException:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class Proc:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path):
        self.name, self.args, self.env = name, args, env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cynode_core", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class Orchestrator(Proc):
    def __init__(self, name: str, base_env: dict[str, str], log_dir: Path, **settings: str):
        self.gateway_port, self.control_port = free_port(), free_port()
        env = dict(base_env)
        env.update(
            {
                "CYNODE_GATEWAY_LISTEN": f"127.0.0.1:{self.gateway_port}",
                "CYNODE_CONTROL_LISTEN": f"127.0.0.1:{self.control_port}",
            }
        )
        env.update({f"CYNODE_{k.upper()}": str(v) for k, v in settings.items()})
        super().__init__(name, ["orchestrator", "serve"], env, log_dir)

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def control(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    def wait_healthy(self, timeout: float = 60) -> Orchestrator:
        def up() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.log()[-3000:]}")
            return requests.get(f"{self.control}/healthz", timeout=2).status_code == 200

        wait_until(up, timeout, f"{self.name} /healthz")
        return self


class Node(Proc):
    def __init__(self, slug: str, base_env: dict[str, str], log_dir: Path, orchestrator: Orchestrator, **settings: str):
        self.port = free_port()
        env = dict(base_env)
        env.update(
            {
                "CYNODE_ORCHESTRATOR_URL": orchestrator.control,
                "CYNODE_NODE_SLUG": slug,
                "CYNODE_WORKER_LISTEN_PORT": str(self.port),
                "CYNODE_INFERENCE_BACKEND": "none",
                "CYNODE_SANDBOX_IMAGE": SANDBOX_IMAGE,
            }
        )
        env.update({f"CYNODE_{k.upper()}": str(v) for k, v in settings.items()})
        super().__init__(slug, ["node", "serve"], env, log_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> Node:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.log()[-3000:]}")
            return requests.get(f"{self.url}/readyz", timeout=2).status_code == 200

        wait_until(ready, timeout, f"{self.name} /readyz")
        return self


class Api:
    """A logged-in gateway client for assertions."""

    def __init__(self, gateway: str, password: str, handle: str = "admin"):
        self.gateway = gateway
        resp = requests.post(f"{gateway}/v1/auth/login", json={"handle": handle, "password": password}, timeout=10)
        assert resp.status_code == 200, resp.text
        self.tokens = resp.json()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}

    def get(self, path: str, **kw):  # type: ignore[no-untyped-def]
        return requests.get(f"{self.gateway}{path}", headers=self.headers, timeout=10, **kw)

    def post(self, path: str, **kw):  # type: ignore[no-untyped-def]
        return requests.post(f"{self.gateway}{path}", headers=self.headers, timeout=10, **kw)

    def create(self, command: str) -> str:
        resp = self.post("/v1/tasks", json={"prompt": command, "input_mode": "commands"})
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]

    def wait_status(self, task_id: str, statuses: tuple[str, ...], timeout: float) -> dict:
        def check():  # type: ignore[no-untyped-def]
            resp = self.get(f"/v1/tasks/{task_id}/result")
            if resp.status_code != 200:
                return None
            body = resp.json()
            return body if body["status"] in statuses else None

        return wait_until(check, timeout, f"task {task_id} in {statuses}", interval=0.2)
