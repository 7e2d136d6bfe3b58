"""A body over the cap is refused by the server before it is read, not after it is stored.

On a real ``cynode orchestrator serve`` process (gateway and control-plane
listeners, a 1 MiB cap) and on the node's Worker API server, over raw
sockets: a ``Content-Length`` far over the cap is answered 413 problem+json
at once, without the client sending a byte of the body; a chunked body that
never ends is answered as soon as it passes the cap; the server's memory
does not grow by what the client sends. waitress's own refusals (a header
block over its cap, broken chunk framing) are problem+json too.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from harness.processes import CynodeProcess, Orchestrator, orchestrator_environ
from harness.worker import WorkerNode

PROBLEM = "application/problem+json"
JSON = {"Content-Type": "application/json"}
MiB = 1024 * 1024
CAP = 1 * MiB  # the orchestrator process's CYNODE_MAX_REQUEST_BYTES here
WORKER_CAP = 10 * MiB  # the Worker API's (the wire contract's)
STREAM_LIMIT = 64 * MiB  # what a test sends at most before it gives up on an answer
ANSWER_SECONDS = 5.0


@pytest.fixture
def served(orchestrator: Any, database_url: str, tmp_path: Path, processes: list[CynodeProcess]) -> Orchestrator:
    env = orchestrator_environ(database_url, orchestrator.settings.home, orchestrator.secrets)
    proc = Orchestrator(env, tmp_path, dispatcher_enabled="false", max_request_bytes=str(CAP))
    processes.append(proc)
    return proc.start().wait_healthy()


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=ANSWER_SECONDS)


def _head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _answer(sock: socket.socket) -> tuple[http.client.HTTPResponse, bytes]:
    resp = http.client.HTTPResponse(sock)
    try:
        resp.begin()
        return resp, resp.read()
    finally:
        resp.close()  # its file object would keep the socket open past the test


def _assert_problem(resp: http.client.HTTPResponse, body: bytes, status: int) -> dict[str, Any]:
    assert resp.status == status, (resp.status, body[:300])
    assert resp.getheader("Content-Type", "").startswith(PROBLEM), resp.getheaders()
    problem = json.loads(body)
    assert problem["status"] == status, problem
    return dict(problem)


def _declared_too_large(url: str, path: str, declared: int, headers: dict[str, str] | None = None) -> Any:
    """Send only the head of a request declaring ``declared`` body bytes; the answer, and how long it took."""
    with _connect(url) as sock:
        started = time.monotonic()
        sock.sendall(
            _head(path, {"Content-Type": "application/json", "Content-Length": str(declared), **(headers or {})})
        )
        resp, body = _answer(sock)  # times out (and fails) if the server waits for the body
        return resp, body, time.monotonic() - started


def _stream_chunks(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[Any, bytes, int]:
    """Send a chunked body 1 MiB at a time, never ending it, until the server answers; the answer and the bytes sent."""
    chunk = b"%x\r\n" % MiB + b"7" * MiB + b"\r\n"
    sent = 0
    with _connect(url) as sock:
        sock.sendall(
            _head(path, {"Content-Type": "application/json", "Transfer-Encoding": "chunked", **(headers or {})})
        )
        while sent < STREAM_LIMIT:
            if select.select([sock], [], [], 0)[0]:
                break  # an answer (or the close after it) is waiting
            try:
                sock.sendall(chunk)
            except OSError:  # the server closed the connection after answering; the answer is still there
                break
            sent += MiB
        else:
            raise AssertionError(f"no answer after {sent // MiB} MiB of an endless chunked body")
        resp, body = _answer(sock)
        return resp, body, sent


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


@pytest.mark.parametrize("listener,path", [("gateway", "/v1/auth/login"), ("control", "/v1/nodes/register")])
def test_orchestrator_refuses_a_declared_oversized_body_before_reading_it(
    served: Orchestrator, listener: str, path: str
) -> None:
    url = served.gateway if listener == "gateway" else served.control
    resp, body, seconds = _declared_too_large(url, path, declared=1024 * MiB)
    problem = _assert_problem(resp, body, 413)
    assert problem["detail"] == "Request body exceeds maximum size"
    assert resp.getheader("Connection") == "close" and resp.getheader("X-Request-Id")
    assert seconds < ANSWER_SECONDS


def test_orchestrator_refuses_an_endless_chunked_body_past_the_cap_without_holding_it(served: Orchestrator) -> None:
    assert served.proc is not None
    before = _rss(served.proc.pid)
    resp, body, sent = _stream_chunks(served.gateway, "/v1/auth/login")
    _assert_problem(resp, body, 413)
    # Sent until the answer: the cap plus what the kernel's socket buffers took in the meantime.
    assert sent < CAP + 32 * MiB, f"{sent // MiB} MiB sent before the answer"
    grown = _rss(served.proc.pid) - before
    assert grown < 32 * MiB, f"server grew by {grown // MiB} MiB"
    # The process still serves.
    resp, body, _ = _declared_too_large(served.gateway, "/v1/auth/login", declared=CAP + 1)
    _assert_problem(resp, body, 413)


def test_orchestrator_server_refusals_are_problems(served: Orchestrator) -> None:
    with _connect(served.gateway) as sock:  # a header block over waitress's 256 KiB
        sock.sendall(_head("/v1/auth/login", {"X-Filler": "a" * 300_000}))
        _assert_problem(*_answer(sock), 431)
    with _connect(served.gateway) as sock:  # a chunk size that is not hexadecimal
        sock.sendall(_head("/v1/auth/login", {"Transfer-Encoding": "chunked"}) + b"zz\r\n{}\r\n0\r\n\r\n")
        _assert_problem(*_answer(sock), 400)


def test_worker_api_refuses_an_oversized_body_before_reading_it_after_the_token(
    worker: WorkerNode, worker_token: str
) -> None:
    auth = {"Authorization": f"Bearer {worker_token}"}
    resp, body, seconds = _declared_too_large(worker.url, "/v1/worker/jobs:run", 5 * WORKER_CAP, auth)
    assert _assert_problem(resp, body, 413)["detail"] == "Request body exceeds maximum size"
    assert seconds < ANSWER_SECONDS
    # The documented order of checks holds: the token first (docs/wire_contract.md#worker-run-job-checks).
    resp, body, _ = _declared_too_large(worker.url, "/v1/worker/jobs:run", 5 * WORKER_CAP)
    _assert_problem(resp, body, 401)
    resp, body, sent = _stream_chunks(worker.url, "/v1/worker/jobs:run", auth)
    _assert_problem(resp, body, 413)
    assert sent < WORKER_CAP + 32 * MiB, f"{sent // MiB} MiB sent before the answer"
