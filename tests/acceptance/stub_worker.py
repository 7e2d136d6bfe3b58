"""A STUB of a node's Worker API for the orchestrator features. Not a node.

It is faithful to node_contract.md section 5 where the orchestrator can
tell: ``GET /healthz`` (``ok``) and ``GET /readyz`` (``ready``) in plain
text; ``POST /v1/worker/jobs:run`` and our ``POST
/v1/worker/jobs/{job_id}:cancel`` behind ``Authorization: Bearer <token>``
compared exactly (anything else: 401 problem details, detail ``Invalid or
missing bearer token``); a request body that is not JSON is 400 ``Invalid
request body``, a ``version`` other than 1 is 400 ``unsupported version``
and ``task_id``/``job_id`` must be UUIDs (400); the answer is a
``RunJobResponse`` with every key of section 5.5 (``exit_code`` always
present); cancel answers ``{"version": 1, "job_id", "canceled": true}`` for
a job it has seen and 404 problem details for an unknown one. It runs no
sandbox: what a job "does" is scripted per test with :class:`Reply`, and the
scripted failures (401/500 problem bodies, a non-JSON 200, 503 with
``Retry-After``, a call held open until released, a delayed answer) are the
answers a real node or a broken one could give.

``idempotent=True`` makes it remember ``job_id``s as the real Worker API
does: a repeated ``jobs:run`` for a job that is running waits for that run,
and one for a finished job gets the same stored answer; ``runs`` counts the
"executions" per ``job_id``.

Every request is recorded (method, path, headers, parsed JSON body) in
``calls``. It listens on 127.0.0.1 only, on a free port, and can be stopped
and started again on the same port (a node going down and coming back).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, request
from werkzeug.serving import make_server

AUTH_DETAIL = "Invalid or missing bearer token"
MAX_HOLD_SECONDS = 120.0  # a held call never outlives a test run, even if nobody releases it

logging.getLogger("werkzeug").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Reply:
    """What the stub does with a ``jobs:run`` call.

    By default a 200 ``RunJobResponse`` with the given ``status``,
    ``exit_code``, ``stdout``, ``stderr``. ``http_status`` other than 200
    answers a problem body instead (``raw_body`` replaces any body, e.g. a
    non-JSON 200). ``hold`` keeps the call open until :meth:`StubWorkerApi.release`;
    ``until_canceled`` keeps it open until the job's ``:cancel`` has arrived
    (a result that comes back late, after the cancel); ``delay`` answers
    after that many seconds.
    """

    status: str = "completed"
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    http_status: int = 200
    raw_body: str | None = None
    hold: bool = False
    until_canceled: bool = False
    delay: float = 0.0


@dataclass
class Call:
    """One request the stub received."""

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


@dataclass
class _Run:
    """One "execution" of a job (idempotent mode): later calls for the job wait for it."""

    done: threading.Event = field(default_factory=threading.Event)
    answer: tuple[int, str, str, dict[str, str]] | None = None


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


class StubWorkerApi:
    """The stub; set ``token``, ``default`` and ``rules`` to shape its answers."""

    def __init__(self, *, idempotent: bool = False) -> None:
        self.token: str | None = None  # the node's orchestrator_bearer_token, set once the node has its config
        self.default = Reply()
        self.rules: list[tuple[Callable[[dict[str, Any]], bool], Reply]] = []
        self.idempotent = idempotent
        self.calls: list[Call] = []
        self.responses: dict[str, dict[str, Any]] = {}  # job_id -> the last RunJobResponse sent
        self.runs: dict[str, int] = {}  # job_id -> how many times the job was "executed"
        self.canceled: dict[str, threading.Event] = {}
        self.on_run: list[Callable[[Call], None]] = []  # called as a jobs:run call arrives (before answering)
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self.app = self._build_app()
        self.start()

    # -------------------------------------------------------------- serving

    def start(self) -> None:
        """Listen (again) on 127.0.0.1, on the same port as before if it ran already."""
        self._server = make_server("127.0.0.1", self._port, self.app, threaded=True)
        self._port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"stub-worker-{self._port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: the port then refuses connections. Held calls are released."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def close(self) -> None:
        self.release()
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def release(self) -> None:
        """Let every held ``jobs:run`` call (and any later one) answer."""
        self._released.set()

    # ---------------------------------------------------------- inspection

    def run_calls(self, job_id: str | None = None) -> list[Call]:
        with self._lock:
            calls = [c for c in self.calls if c.path == "/v1/worker/jobs:run"]
        return [c for c in calls if job_id is None or c.job_id == job_id]

    def cancel_calls(self, job_id: str | None = None) -> list[Call]:
        with self._lock:
            calls = [c for c in self.calls if c.path.endswith(":cancel")]
        return [c for c in calls if job_id is None or c.job_id == job_id]

    def _cancel_event(self, job_id: str) -> threading.Event:
        with self._lock:
            return self.canceled.setdefault(job_id, threading.Event())

    def reply_for(self, body: dict[str, Any]) -> Reply:
        for matches, reply in self.rules:
            if matches(body):
                return reply
        return self.default

    def when_command_contains(self, text: str, reply: Reply) -> None:
        """Answer ``reply`` to jobs whose joined ``sandbox.command`` contains ``text``."""

        def matches(body: dict[str, Any]) -> bool:
            command = (body.get("sandbox") or {}).get("command") or []
            return text in " ".join(str(part) for part in command)

        self.rules.append((matches, reply))

    # ------------------------------------------------------------- the app

    def _problem(
        self, status: int, kind: str, title: str, detail: str, headers: dict[str, str] | None = None
    ) -> Response:
        body = json.dumps({"type": f"urn:cynodeai:error:{kind}", "title": title, "status": status, "detail": detail})
        return Response(body, status=status, content_type="application/problem+json", headers=headers or {})

    def _authorized(self) -> bool:
        header = request.headers.get("Authorization", "")
        return self.token is not None and hmac.compare_digest(header.encode(), f"Bearer {self.token}".encode())

    def _record(self) -> Call:
        raw = request.get_data(as_text=True)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        call = Call(request.method, request.path, dict(request.headers), body)
        with self._lock:
            self.calls.append(call)
        return call

    def _build_app(self) -> Flask:
        app = Flask("stub_worker_api")

        @app.get("/healthz")
        def healthz() -> Response:
            return Response("ok", content_type="text/plain; charset=utf-8")

        @app.get("/readyz")
        def readyz() -> Response:
            return Response("ready", content_type="text/plain; charset=utf-8")

        @app.post("/v1/worker/jobs:run")
        def run_job() -> Response:
            call = self._record()
            if not self._authorized():
                return self._problem(401, "authentication", "Unauthorized", AUTH_DETAIL, {"WWW-Authenticate": "Bearer"})
            body = call.body
            if not isinstance(body, dict):
                return self._problem(400, "validation", "Bad Request", "Invalid request body")
            if body.get("version") != 1:
                return self._problem(400, "validation", "Bad Request", "unsupported version")
            if not _is_uuid(body.get("task_id")) or not _is_uuid(body.get("job_id")):
                return self._problem(400, "validation", "Bad Request", "task_id and job_id must be UUIDs")
            for hook in list(self.on_run):
                hook(call)
            return self._answer(body)

        @app.post("/v1/worker/jobs/<job_id>:cancel")
        def cancel_job(job_id: str) -> Response:
            self._record()
            if not self._authorized():
                return self._problem(401, "authentication", "Unauthorized", AUTH_DETAIL, {"WWW-Authenticate": "Bearer"})
            if not _is_uuid(job_id):
                return self._problem(400, "validation", "Bad Request", "job_id must be a UUID")
            if not self.run_calls(job_id):
                return self._problem(404, "not_found", "Not Found", "Job not found")
            self._cancel_event(job_id).set()
            body = json.dumps({"version": 1, "job_id": job_id, "canceled": True})
            return Response(body, content_type="application/json")

        return app

    def _answer(self, body: dict[str, Any]) -> Response:
        job_id = str(body["job_id"])
        if not self.idempotent:
            with self._lock:
                self.runs[job_id] = self.runs.get(job_id, 0) + 1
            return Response(*self._execute(body))
        with self._lock:
            run = self._runs.get(job_id)
            owner = run is None
            if owner:
                run = self._runs[job_id] = _Run()
                self.runs[job_id] = self.runs.get(job_id, 0) + 1
        assert run is not None
        if owner:
            run.answer = self._execute(body)
            run.done.set()
        else:
            run.done.wait(MAX_HOLD_SECONDS)
        assert run.answer is not None
        return Response(*run.answer)

    def _execute(self, body: dict[str, Any]) -> tuple[str, int, dict[str, str]]:
        """The scripted "run": (body, status, headers) of the answer."""
        reply = self.reply_for(body)
        started = _now()
        if reply.hold:
            self._released.wait(MAX_HOLD_SECONDS)
        if reply.until_canceled:
            canceled, deadline = self._cancel_event(str(body["job_id"])), time.monotonic() + MAX_HOLD_SECONDS
            while not canceled.wait(0.05) and not self._released.is_set() and time.monotonic() < deadline:
                pass
        if reply.delay:
            time.sleep(reply.delay)
        if reply.raw_body is not None:
            return reply.raw_body, reply.http_status, {"Content-Type": "text/plain; charset=utf-8"}
        if reply.http_status != 200:
            kinds = {
                401: ("authentication", "Unauthorized"),
                500: ("internal", "Internal Server Error"),
                503: ("internal", "Service Unavailable"),
            }
            kind, title = kinds.get(reply.http_status, ("internal", "Error"))
            headers = {"Content-Type": "application/problem+json"}
            if reply.http_status == 503:
                headers["Retry-After"] = "1"
            problem = {
                "type": f"urn:cynodeai:error:{kind}",
                "title": title,
                "status": reply.http_status,
                "detail": "scripted failure",
            }
            return json.dumps(problem), reply.http_status, headers
        result = {
            "version": 1,
            "task_id": body["task_id"],
            "job_id": body["job_id"],
            "status": reply.status,
            "exit_code": reply.exit_code,
            "stdout": reply.stdout,
            "stderr": reply.stderr,
            "started_at": started,
            "ended_at": _now(),
            "truncated": {"stdout": False, "stderr": False},
        }
        with self._lock:
            self.responses[str(body["job_id"])] = result
        return json.dumps(result), 200, {"Content-Type": "application/json"}
