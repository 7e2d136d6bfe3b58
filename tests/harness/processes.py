"""Real ``cynode`` processes: any command, an orchestrator, a node agent.

Each is ``python -m cynode_core <args>`` in a session of its own, with an
environment the test chose (:func:`clean_environ` drops every cynode or
upstream setting of the caller's shell), its output appended to a log file
(never a pipe, which a chatty child could fill) and loopback ports. Every
wait is bounded and :meth:`CynodeProcess.stop` ends whatever is left, so a
hung child never outlives its test. A process can be started again after it
ended (a restart); its log then holds every run.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests

from cynode_core.client import ApiError

REPO = Path(__file__).resolve().parents[2]
SANDBOX_IMAGE = "localhost/cynode-sandbox:busybox"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy and return that; fail naming ``what`` after ``timeout`` s.

    A connection error counts as "not yet": a service may still be starting.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except (requests.RequestException, ApiError) as exc:
            if isinstance(exc, ApiError) and exc.status != 0:  # 0: the API client could not reach the server
                raise
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def _upstream_names() -> set[str]:
    """Every upstream alias a settings class reads (the CYNODE_* names are dropped by prefix)."""
    from cynode_core.orchestrator.settings import OrchestratorSettings
    from node_agent.settings import NodeSettings

    return {
        alias
        for cls in (OrchestratorSettings, NodeSettings)
        for f in dataclasses.fields(cls)
        for alias in f.metadata.get("env", ())
    }


def clean_environ(**values: str) -> dict[str, str]:
    """The current environment without any cynode or upstream setting, plus ``values``.

    No variable the caller's shell holds can hand the child a secret or a
    setting the test did not choose. ``CONTAINERS_CONF`` points at the
    project's Podman configuration unless the caller set one.
    """
    upstream = _upstream_names()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CYNODE_") and k not in upstream}
    env.setdefault("CONTAINERS_CONF", "/etc/cynode/containers.conf")
    env.update(values)
    return env


def orchestrator_environ(database_url: str, home: Path, secrets: Any = None, **values: str) -> dict[str, str]:
    """:func:`clean_environ` with the database, ``CYNODE_HOME`` and, when given, the test's secrets."""
    env = clean_environ(CYNODE_DATABASE_URL=database_url, CYNODE_HOME=str(home), **values)
    if secrets is not None:
        env.update(
            CYNODE_JWT_SECRET=secrets.jwt_secret,
            CYNODE_NODE_PSK=secrets.psk,
            CYNODE_ADMIN_PASSWORD=secrets.admin_password,
        )
    return env


def setting_environ(settings: Mapping[str, object]) -> dict[str, str]:
    """``{"lease_seconds": 3}`` as ``{"CYNODE_LEASE_SECONDS": "3"}``."""
    return {f"CYNODE_{name.upper()}": str(value) for name, value in settings.items()}


class CynodeProcess:
    """``python -m cynode_core <args>``; :meth:`start` runs it, :attr:`output` reads its log."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path, name: str = "cynode"):
        self.args, self.env, self.log, self.name = list(args), dict(env), log, name
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CynodeProcess:
        with open(self.log, "ab") as out:  # the child holds its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cynode_core", *self.args],
                env=self.env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    @property
    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _exited(self) -> AssertionError:
        assert self.proc is not None
        return AssertionError(f"{self.name} exited with {self.proc.returncode}; output:\n{self.output[-5000:]}")

    def wait(self, timeout: float) -> int:
        """The exit code; the process is killed and the test fails on timeout."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not exit within {timeout}s; output:\n{self.output}") from None

    def wait_answering(self, urls: list[str], status: int = 200, timeout: float = 60.0) -> None:
        """Until every URL answers ``status``; fails if the process exits first."""

        def answering() -> bool:
            if not self.alive():
                raise self._exited()
            return all(requests.get(url, timeout=2).status_code == status for url in urls)

        wait_until(answering, timeout, f"{self.name} to answer {status} on {urls}", interval=0.1)

    def kill(self) -> None:
        """SIGKILL to the whole session: no shutdown code runs."""
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not end within ``timeout``; the exit code."""
        if self.proc is None:
            return None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


class Orchestrator(CynodeProcess):
    """``cynode orchestrator serve`` on two free loopback ports; ``settings`` become ``CYNODE_*`` variables."""

    def __init__(self, env: Mapping[str, str], log_dir: Path, name: str = "orchestrator", **settings: object):
        self.gateway_port, self.control_port = free_port(), free_port()
        env = {
            **env,
            "CYNODE_GATEWAY_LISTEN": f"127.0.0.1:{self.gateway_port}",
            "CYNODE_CONTROL_LISTEN": f"127.0.0.1:{self.control_port}",
            **setting_environ(settings),
        }
        super().__init__(["orchestrator", "serve"], env, log_dir / f"{name}.log", name)

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def control(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    def wait_healthy(self, timeout: float = 60.0) -> Orchestrator:
        self.wait_answering([f"{self.gateway}/healthz", f"{self.control}/healthz"], timeout=timeout)
        return self


class Node(CynodeProcess):
    """``cynode node serve`` for ``orchestrator`` on a free Worker API port, without an inference backend."""

    def __init__(
        self, slug: str, env: Mapping[str, str], log_dir: Path, orchestrator: Orchestrator, **settings: object
    ):
        self.port = free_port()
        env = {
            **env,
            "CYNODE_ORCHESTRATOR_URL": orchestrator.control,
            "CYNODE_NODE_SLUG": slug,
            "CYNODE_WORKER_LISTEN_PORT": str(self.port),
            "CYNODE_INFERENCE_BACKEND": "none",
            "CYNODE_SANDBOX_IMAGE": SANDBOX_IMAGE,
            **setting_environ(settings),
        }
        super().__init__(["node", "serve"], env, log_dir / f"{slug}.log", slug)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> Node:
        self.wait_answering([f"{self.url}/readyz"], timeout=timeout)
        return self
