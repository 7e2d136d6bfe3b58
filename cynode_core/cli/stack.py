"""``cynode up``: embedded PostgreSQL + orchestrator + local node agents, as child processes.

The orchestrator process owns the embedded database; each node is a
``cynode node serve`` process with its own port and state directory. Stopping
(SIGINT/SIGTERM) stops the nodes first, so they cancel their jobs and remove
their containers, then the orchestrator, which stops the database.

Each child runs under a lifeline watcher (:mod:`cynode_core.lifeline`): if
this process dies without stopping them (SIGKILL, a crash), the watchers end
them, and they in turn end their database and Podman services the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from cynode_core import lifeline
from cynode_core.orchestrator.services.secrets import NODE_PSK_FILE, resolve_secrets
from cynode_core.orchestrator.settings import OrchestratorSettings


class StackError(RuntimeError):
    """A child process failed to start or died."""


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    health_url: str


@dataclass
class Stack:
    settings: OrchestratorSettings
    nodes: int = 1
    inference_backend: str = "llamacpp"
    base_port: int = 12090
    log_dir: Path | None = None
    progress: object = print
    children: list[Child] = field(default_factory=list)
    # Set (e.g. by a signal handler) to give up waiting for the children to start.
    interrupted: threading.Event = field(default_factory=threading.Event)

    @property
    def gateway_url(self) -> str:
        return f"http://{self.settings.gateway_listen.replace('0.0.0.0', '127.0.0.1')}"

    @property
    def control_url(self) -> str:
        return self.settings.control_public_url

    def _say(self, text: str) -> None:
        self.progress(text)  # type: ignore[operator]

    def _spawn(self, name: str, args: list[str], env: dict[str, str], health_url: str) -> Child:
        log_dir = self.log_dir or (self.settings.home / "logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / f"{name}.log", "ab") as log_file:  # the child holds its own descriptor
            proc = lifeline.spawn(
                [sys.executable, "-m", "cynode_core", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        child = Child(name, proc, health_url)
        self.children.append(child)
        return child

    def start(self, timeout: float = 120.0) -> None:
        home = self.settings.home
        home.mkdir(parents=True, exist_ok=True)
        # Resolve (generate once) the secrets here so nodes can read the PSK file.
        resolve_secrets(
            home,
            jwt_secret=self.settings.jwt_secret,
            node_psk=self.settings.node_psk,
            admin_password=self.settings.admin_password,
        )
        env = dict(os.environ)
        env.setdefault("CYNODE_HOME", str(home))
        self._say(f"starting the orchestrator (logs in {self.log_dir or home / 'logs'})")
        orch = self._spawn("orchestrator", ["orchestrator", "serve"], env, f"{self.control_url}/healthz")
        # The nodes start at once: each settles its runtime (Podman's service, a predecessor's leftovers)
        # while the orchestrator starts its database, then waits for the control plane before registering.
        for i in range(self.nodes):
            slug = f"node-{i + 1:02d}"
            node_env = dict(env)
            node_env.update(
                {
                    "CYNODE_ORCHESTRATOR_URL": self.control_url,
                    "CYNODE_NODE_SLUG": slug,
                    "CYNODE_NODE_NAME": f"local node {i + 1}",
                    "CYNODE_WORKER_LISTEN_PORT": str(self.base_port + i),
                    "CYNODE_INFERENCE_BACKEND": os.environ.get("CYNODE_INFERENCE_BACKEND", self.inference_backend),
                }
            )
            if not (self.settings.node_psk or os.environ.get("CYNODE_NODE_PSK")):
                node_env["CYNODE_NODE_PSK_FILE"] = str(home / NODE_PSK_FILE)
            self._say(f"starting node {slug} (Worker API on 127.0.0.1:{self.base_port + i})")
            self._spawn(slug, ["node", "serve"], node_env, f"http://127.0.0.1:{self.base_port + i}/readyz")
        for child in self.children:
            self._wait(child, timeout)
        self._wait(Child("orchestrator readiness", orch.proc, f"{self.gateway_url}/readyz"), timeout)

    def _wait(self, child: Child, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.interrupted.is_set():
                raise StackError(f"interrupted while waiting for {child.name}")
            self.check_alive()
            try:
                if requests.get(child.health_url, timeout=2).status_code == 200:
                    self._say(f"{child.name}: ready")
                    return
            except requests.RequestException:
                pass
            self.interrupted.wait(0.2)
        raise StackError(f"{child.name} was not ready within {timeout:.0f} s ({child.health_url})")

    def check_alive(self) -> None:
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                raise StackError(
                    f"{child.name} exited with code {code}; see its log under {self.settings.home / 'logs'}"
                )

    def stop(self, grace: float = 30.0) -> None:
        """Nodes first (they clean their containers), then the orchestrator (and its database)."""
        for group in (self.children[1:], self.children[:1]):
            for child in group:
                if child.proc.poll() is None:
                    child.proc.send_signal(signal.SIGTERM)
            for child in group:
                try:
                    child.proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    child.proc.kill()
                    child.proc.wait(timeout=5)
        self.children.clear()
