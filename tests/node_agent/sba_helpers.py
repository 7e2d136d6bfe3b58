"""Helpers of the sandbox agent runner tests: the runner's directories, a run of it, a scripted chat stand-in.

The runner is run as the node runs it, ``python3 -I -B runner.py --job ...
--result ... --workspace ...``, from a directory laid out by
``node_agent.sba.install_runner`` (the spec module next to it as
``sba_spec.py``), with the system ``python3``. Temporary directories stand
for ``/opt/cynode/sba``, ``/job`` and ``/workspace``.
"""

from __future__ import annotations

import json
import os
import socketserver
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from cynode_core.contract.job.sba import Constraints, ContextSpec, InferenceSpec, JobSpec, StepSpec
from node_agent.sba import install_runner

SYSTEM_PYTHON = "/usr/bin/python3"
MODEL = "scripted:1b"
JOB_ID = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a"
TASK_ID = "7c1e4b2a-3f5d-4e6a-9b8c-1d2e3f4a5b6c"


@dataclass
class SbaDirs:
    """Stand-ins for the sandbox's ``/opt/cynode/sba``, ``/job`` (with ``artifacts/``) and ``/workspace``."""

    runner: Path
    job: Path
    workspace: Path

    @classmethod
    def make(cls, root: Path) -> SbaDirs:
        job, workspace = root / "job", root / "workspace"
        (job / "artifacts").mkdir(parents=True)
        workspace.mkdir()
        return cls(install_runner(root / "runner"), job, workspace)


@dataclass
class RunnerRun:
    returncode: int
    stdout: str
    stderr: str
    result: dict[str, Any]
    seconds: float


def direct_spec(*steps: tuple[str, dict[str, Any]], max_output_bytes: int = 16384, runtime: int = 60) -> JobSpec:
    return JobSpec(
        job_id=JOB_ID,
        task_id=TASK_ID,
        execution_mode="direct_steps",
        constraints=Constraints(max_runtime_seconds=runtime, max_output_bytes=max_output_bytes),
        steps=tuple(StepSpec(kind, args) for kind, args in steps),
    )


def agent_spec(max_steps: int = 8, runtime: int = 60) -> JobSpec:
    return JobSpec(
        job_id=JOB_ID,
        task_id=TASK_ID,
        execution_mode="agent_inference",
        constraints=Constraints(max_runtime_seconds=runtime, max_output_bytes=16384, max_steps=max_steps),
        inference=InferenceSpec(allowed_models=(MODEL,), source="worker"),
        context=ContextSpec(
            baseline_context="You are a sandbox agent. You work in /workspace only.",
            project_context="project demo (p-1)",
            task_context="Write hello.txt and check it.",
            requirements=("hello.txt holds hello",),
        ),
    )


def run_runner(
    dirs: SbaDirs, spec: JobSpec | dict[str, Any] | str, env: dict[str, str] | None = None, timeout: float = 60
) -> RunnerRun:
    """Run the runner on ``spec`` (a JobSpec, or raw JSON for bad specs) and read its result."""
    text = spec if isinstance(spec, str) else json.dumps(spec if isinstance(spec, dict) else spec.to_json())
    (dirs.job / "job.json").write_text(text, encoding="utf-8")
    command = [SYSTEM_PYTHON, "-I", "-B", str(dirs.runner / "runner.py")]
    command += ["--job", str(dirs.job / "job.json"), "--result", str(dirs.job / "result.json")]
    command += ["--workspace", str(dirs.workspace)]
    started = time.monotonic()
    done = subprocess.run(
        command,
        env={"PATH": os.environ["PATH"], **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    result = json.loads((dirs.job / "result.json").read_text(encoding="utf-8"))
    return RunnerRun(done.returncode, done.stdout, done.stderr, result, time.monotonic() - started)


def call(tool: str, **arguments: Any) -> str:
    """A decision as a model answers it under the step schema."""
    return json.dumps({"action": "call", "tool": tool, "arguments": arguments})


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class ScriptedChat:
    """A SCRIPTED stand-in for Ollama's ``POST /api/chat``, served on a Unix socket as the node's proxy serves it.

    Stand-in, faithful to Ollama's published API (docs.ollama.com/api/chat):
    a ``"stream": false`` request is answered with one JSON object
    (``model``, ``created_at``, ``message`` {``role`` ``assistant``,
    ``content``}, ``done`` true, ``done_reason``, counts), an error with
    ``{"error": "..."}``. Why a stand-in: these tests assert the runner's
    mechanics (every decide call carries ``format``, temperature 0 and the
    seed; a decision is validated, executed and fed back; limits and the
    deadline end the loop), which needs answers known in advance, not a
    model's cleverness. Each request takes the next answer of ``script``
    (``default`` once it is empty); ``chunked`` frames answers in chunks
    instead of ``Content-Length``; ``delay`` holds every answer back.
    """

    def __init__(self, script: Sequence[str] = (), *, default: str | None = None, chunked: bool = False) -> None:
        self.script = list(script)
        self.default = default
        self.chunked = chunked
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        self._dir = tempfile.mkdtemp(prefix="sba-chat-")  # short: a socket path has at most 107 bytes
        self.path = os.path.join(self._dir, "inference-proxy.sock")
        self._server = _UnixServer(self.path, _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-chat", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return "http+unix://" + urllib.parse.quote(self.path, safe="")

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        if os.path.exists(self.path):
            os.unlink(self.path)
        os.rmdir(self._dir)

    def next_answer(self, body: dict[str, Any]) -> str | None:
        self.requests.append(body)
        return self.script.pop(0) if self.script else self.default


def _handler(stub: ScriptedChat) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            if self.path != "/api/chat":
                self._send(404, b"404 page not found")
                return
            text = stub.next_answer(body)
            time.sleep(stub.delay)
            if text is None:
                self._send(500, json.dumps({"error": "the script is exhausted"}).encode())
                return
            answer = {
                "model": body.get("model"),
                "created_at": "2025-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": text},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 10,
                "eval_count": max(1, len(text) // 4),
            }
            self._send(200, json.dumps(answer).encode())

        def _send(self, status: int, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            if stub.chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                half = len(payload) // 2
                for piece in (payload[:half], payload[half:], b""):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                return
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
