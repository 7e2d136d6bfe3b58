"""A node's real Worker API on loopback, over a scripted sandbox runtime.

:class:`WorkerNode` is the node agent's own ``create_worker_app`` around its
own ``JobExecutor`` (validation, bearer token, idempotency by ``job_id``,
cancel, the ``RunJobResponse`` shape), served by the node's
``BackgroundServer``, as tests/wire/targets.py builds it. Only the sandbox
is a stand-in: :class:`ScriptedRuntime` implements the ``SandboxRuntime``
protocol and, instead of starting a container, returns the
:class:`Script` a test chose for the job's command, optionally holding the
"container" until the job is canceled or the test releases it.

Every HTTP request the Worker API receives is recorded (a WSGI layer in
front of the app) with its headers and parsed body, and so is each
``RunJobResponse`` it sends. The server can be stopped and started again on
the same port (a node going down and coming back).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.datastructures import EnvironHeaders

from cynode_core.contract import SandboxOutcome, SandboxSpec
from cynode_core.settings import load_settings
from node_agent.executor import JobExecutor
from node_agent.http_server import BackgroundServer
from node_agent.readiness import Readiness
from node_agent.settings import NodeSettings
from node_agent.worker_api import create_worker_app

RUN_PATH = "/v1/worker/jobs:run"
MAX_HOLD_SECONDS = 120.0  # a held job never outlives a test run, even if nobody releases it


@dataclass(frozen=True)
class Script:
    """What a job's "container" does: its outcome, after ``delay`` seconds.

    ``hold`` keeps it running until the job is canceled or
    :meth:`ScriptedRuntime.release` is called, as a long command would.
    """

    status: str = "completed"
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    hold: bool = False
    delay: float = 0.0


class ScriptedRuntime:
    """A ``SandboxRuntime`` that plays each job from a :class:`Script` chosen by its command."""

    name = "scripted"

    def __init__(self) -> None:
        self.default = Script()
        self.rules: list[tuple[str, Script]] = []
        self.specs: list[SandboxSpec] = []  # every run() call, in order
        self._released = threading.Event()
        self._canceled: dict[str, threading.Event] = {}
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def when_command_contains(self, text: str, script: Script) -> None:
        """Play ``script`` for jobs whose joined command contains ``text`` (first matching rule wins)."""
        self.rules.append((text, script))

    def script_for(self, spec: SandboxSpec) -> Script:
        command = " ".join(spec.command)
        return next((script for text, script in self.rules if text in command), self.default)

    def runs(self, job_id: str) -> int:
        """How many times the job's "container" was started."""
        with self._lock:
            return sum(1 for spec in self.specs if spec.job_id == job_id.lower())

    def release(self) -> None:
        """Let every held job (and any later one) finish."""
        self._released.set()

    def _cancel_event(self, job_id: str) -> threading.Event:
        with self._lock:
            return self._canceled.setdefault(job_id, threading.Event())

    # -- the SandboxRuntime protocol --------------------------------------------------

    def check(self, image: str) -> None:
        pass

    def run(self, spec: SandboxSpec) -> SandboxOutcome:
        with self._lock:
            self.specs.append(spec)
            self._running.add(spec.job_id)
        try:
            script = self.script_for(spec)
            started = dt.datetime.now(dt.UTC)
            if script.hold:
                canceled, deadline = self._cancel_event(spec.job_id), time.monotonic() + MAX_HOLD_SECONDS
                while not canceled.wait(0.05) and not self._released.is_set() and time.monotonic() < deadline:
                    pass
            if script.delay:
                time.sleep(script.delay)
            return SandboxOutcome(
                status=script.status,
                exit_code=script.exit_code,
                stdout=script.stdout.encode(),
                stderr=script.stderr.encode(),
                started_at=started,
                ended_at=dt.datetime.now(dt.UTC),
            )
        finally:
            with self._lock:
                self._running.discard(spec.job_id)

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            running = job_id in self._running
        if running:
            self._cancel_event(job_id).set()
        return running

    def version(self) -> str:
        return "scripted 1"

    def close(self) -> None:
        self.release()


@dataclass
class Call:
    """One request the Worker API received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)
    wall: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def job_id(self) -> str | None:
        if isinstance(self.body, dict) and "job_id" in self.body:
            return str(self.body["job_id"])
        if self.path.endswith(":cancel"):
            return self.path.rsplit("/", 1)[1].removesuffix(":cancel")
        return None

    @property
    def task_id(self) -> str | None:
        return str(self.body["task_id"]) if isinstance(self.body, dict) and "task_id" in self.body else None


class WorkerNode:
    """The real Worker API over a :class:`ScriptedRuntime`, on 127.0.0.1, ready, accepting a token set later."""

    def __init__(self, home: Path, *, job_slots: int = 8):
        settings = load_settings(
            NodeSettings,
            environ={},
            overrides={
                "home": str(home),
                "node_psk": "unused-by-the-worker-api",
                "inference_backend": "none",
                "worker_listen_host": "127.0.0.1",
                "job_slots": job_slots,
            },
        )
        self.runtime = ScriptedRuntime()
        self.executor = JobExecutor(self.runtime, settings)
        self.readiness = Readiness(cache_seconds=0)
        self.readiness.mark_ready()
        # The token arrives with the node's config; until then nothing the orchestrator holds opens the API.
        self.app = create_worker_app(self.executor, bearer_token=secrets.token_urlsafe(), readiness=self.readiness)
        self.calls: list[Call] = []
        self.responses: dict[str, dict[str, Any]] = {}  # job_id -> the last RunJobResponse sent
        self.on_run: list[Callable[[Call], None]] = []  # called as a jobs:run call arrives, before the app
        self._lock = threading.Lock()
        self._threads = job_slots * 2 + 4
        self._server: BackgroundServer | None = None
        self._port = 0
        self.start()

    # -- serving ------------------------------------------------------------------------

    def start(self) -> None:
        """Listen (again) on 127.0.0.1, on the same port as before if it ran already."""
        self._server = BackgroundServer(
            self._record, host="127.0.0.1", port=self._port, threads=self._threads, name="scripted-worker-api"
        )
        self._port = self._server.port
        self._server.start()

    def stop(self) -> None:
        """Stop listening: the port then refuses connections."""
        if self._server is not None:
            self._server.stop(drain_timeout=0.5)
            self._server = None

    def close(self) -> None:
        self.runtime.release()
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    def set_token(self, token: str) -> None:
        """Accept ``Authorization: Bearer <token>`` from now on (what the node does with its config's token)."""
        self.app.extensions["cynode_worker"]["set_token"](token)

    # -- what happened ------------------------------------------------------------------

    def run_calls(self, job_id: str | None = None) -> list[Call]:
        with self._lock:
            calls = [c for c in self.calls if c.path == RUN_PATH]
        return [c for c in calls if job_id is None or c.job_id == job_id]

    def cancel_calls(self, job_id: str | None = None) -> list[Call]:
        with self._lock:
            calls = [c for c in self.calls if c.path.endswith(":cancel")]
        return [c for c in calls if job_id is None or c.job_id == job_id]

    def _record(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """WSGI layer in front of the Worker API: note the request, pass it on, note a RunJobResponse."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            body: Any = json.loads(raw) if raw else None
        except (ValueError, RecursionError):  # not JSON, or nested past the stack
            body = raw.decode(errors="replace")
        call = Call(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), dict(EnvironHeaders(environ)), body)
        with self._lock:
            self.calls.append(call)
        if call.path == RUN_PATH:
            for hook in list(self.on_run):
                hook(call)
        status: list[str] = []

        def remember_status(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(code)
            return start_response(code, headers, exc_info)

        answer_iter = self.app(environ, remember_status)
        try:
            chunks = list(answer_iter)
        finally:
            getattr(answer_iter, "close", lambda: None)()
        if call.path == RUN_PATH and status and status[0].startswith("200"):
            result = json.loads(b"".join(chunks))
            with self._lock:
                self.responses[str(result["job_id"])] = result
        return chunks
