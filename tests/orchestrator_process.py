"""The real ``cynode`` command as a child process, for start-up and CLI tests.

Every wait is bounded and :meth:`CynodeProcess.stop` always kills what is
left, so a hung child never outlives its test. Output goes to a file (not a
pipe) so a chatty child can never block on a full pipe buffer.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_environ(**values: str) -> dict[str, str]:
    """The current environment without any cynode or upstream setting, plus ``values``.

    No variable the caller's shell holds can hand the child a secret or a
    setting the test did not choose.
    """
    upstream = _upstream_names()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CYNODE_") and k not in upstream}
    env.update(values)
    return env


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class CynodeProcess:
    """``python -m cynode_core <args>`` with its output in ``log``."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path):
        self.log = log
        self._out = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cynode_core", *args],
            env=dict(env),
            cwd=REPO,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        """The exit code; the process is killed and the test fails on timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"cynode did not exit within {timeout}s; output:\n{self.output}") from None

    def wait_healthy(self, ports: list[int], timeout: float = 60.0) -> None:
        """Until ``/healthz`` answers 200 on every port; fails if the process exits first."""
        deadline = time.monotonic() + timeout
        pending = list(ports)
        while pending:
            if self.proc.poll() is not None:
                raise AssertionError(f"cynode exited with {self.proc.returncode}; output:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"cynode not healthy within {timeout}s; output:\n{self.output}")
            try:
                if requests.get(f"http://127.0.0.1:{pending[0]}/healthz", timeout=1).status_code == 200:
                    pending.pop(0)
                    continue
            except requests.RequestException:
                pass
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not end within ``timeout``."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            return self.proc.returncode
        finally:
            self._out.close()
