"""``POST /v1/worker/inference:chat``: the orchestrator's way to a node's model.

See docs/wire_contract.md#worker-inference-chat.

Real parts only: a Worker API on 127.0.0.1 over real Podman, built as
tests/node_agent/conftest.py ``start_worker`` builds it, and the REAL
embedded llama.cpp backend (entry point ``llamacpp``, the bundled
gemma-3-270m) as the node's inference backend, reached over loopback HTTP.
"Backend down" is a real loopback port nobody listens on. The backend runs
one generation at a time, which two kinds of test use: a long generation
sent straight to it (``Blocker``) keeps every other request waiting, and a
request that is served at once proves that an abandoned generation stopped.
These tests use the model: run them on a quiet machine.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from chat_helpers import (
    CHAT_PATH,
    LONG_PROMPT,
    LONG_TOKENS,
    NDJSON,
    Blocker,
    ChatNode,
    chat_body,
    direct,
    long_body,
    wait_for,
    without_timings,
)
from harness.processes import free_port
from metrics_samples import value
from node_helpers import PROBLEM, WORKER_TOKEN, assert_problem, make_settings

from cynode_core.contract import InferenceBackend, SandboxRuntime
from node_agent.executor import JobExecutor
from node_agent.http_server import BackgroundServer
from node_agent.inference_chat import MAX_CALLS
from node_agent.readiness import Readiness
from node_agent.worker_api import create_worker_app

NodeFactory = Callable[..., ChatNode]


@pytest.fixture
def start_node(podman_runtime: SandboxRuntime, tmp_path: Path) -> Iterator[NodeFactory]:
    """``start(backend_url, models, timeout=300)``: a Worker API on a free loopback port, its backend set."""
    servers: list[BackgroundServer] = []

    def start(backend_url: str | None, models: tuple[str, ...] = (), *, timeout: float = 300) -> ChatNode:
        settings = make_settings(tmp_path / f"home-{len(servers)}")
        executor = JobExecutor(podman_runtime, settings)
        if backend_url is not None:
            executor.set_inference_backend(backend_url, models)
        readiness = Readiness(cache_seconds=0)
        readiness.mark_ready()
        app = create_worker_app(executor, bearer_token=WORKER_TOKEN, readiness=readiness, inference_timeout=timeout)
        # As the node manager sizes it: job slots, their repeats, the chat calls, health checks.
        threads = settings.job_slots * 2 + 4 + MAX_CALLS
        server = BackgroundServer(app, host="127.0.0.1", port=0, threads=threads)
        server.start()
        servers.append(server)
        return ChatNode(f"http://127.0.0.1:{server.port}", executor, threads)

    yield start
    for server in servers:
        server.stop(drain_timeout=1.0)


@pytest.fixture
def node(start_node: NodeFactory, real_backend: InferenceBackend) -> ChatNode:
    """A node whose backend is the real llama.cpp server."""
    return start_node(real_backend.base_url, tuple(real_backend.models()))


@pytest.fixture
def no_backend_node(start_node: NodeFactory) -> ChatNode:
    """A node run with ``CYNODE_INFERENCE_BACKEND=none``."""
    return start_node(None)


@pytest.fixture
def blocker(real_backend: InferenceBackend, real_model: str) -> Iterator[Callable[[], Blocker]]:
    started: list[Blocker] = []

    def start() -> Blocker:
        started.append(Blocker(real_backend, real_model))
        return started[-1]

    yield start
    for one in started:
        one.stop()


@pytest.fixture(scope="module")
def long_run(real_backend: InferenceBackend, real_model: str) -> float:
    """The premise of the cancellation tests: ``long_body`` runs LONG_TOKENS tokens, for seconds; how many."""
    started = time.monotonic()
    resp = direct(real_backend, {**long_body(real_model), "stream": False})
    seconds = time.monotonic() - started
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["done_reason"] == "length" and answer["eval_count"] == LONG_TOKENS, answer
    assert seconds > 4, f"a long generation took only {seconds:.1f} s: raise LONG_TOKENS"
    return seconds


# ======================================================================== refusals


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"bearer {WORKER_TOKEN}"}],
    ids=["none", "wrong", "lowercase-scheme"],
)
def test_a_call_without_the_worker_token_is_401(node: ChatNode, real_model: str, headers: dict[str, str]) -> None:
    resp = node.chat(chat_body(real_model, stream=False), token=None, headers=headers)
    assert_problem(resp, 401, "Invalid or missing bearer token", kind="authentication")
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert node.all_calls() == 0


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"not json", "Invalid request body"),
        (b"\xff\xfe{}", "Invalid request body"),
        (b'{"model": "m", "messages": [], "x": "\\ud800"}', "Invalid request body"),
        (b"[" * 100 + b"]" * 100, "Invalid request body"),
        (b'["model", "messages"]', "request body must be a JSON object"),
        (b'{"messages": []}', "model must be a non-empty string"),
        (b'{"model": 7, "messages": []}', "model must be a non-empty string"),
        (b'{"model": "  ", "messages": []}', "model must be a non-empty string"),
        (b'{"model": "m"}', "messages must be a list"),
        (b'{"model": "m", "messages": {"role": "user"}}', "messages must be a list"),
    ],
    ids=[
        "not-json",
        "not-utf8",
        "lone-surrogate",
        "too-deep",
        "array",
        "no-model",
        "model-number",
        "model-blank",
        "no-messages",
        "messages-object",
    ],
)
def test_a_body_the_node_cannot_forward_is_400(no_backend_node: ChatNode, body: bytes, detail: str) -> None:
    # A body that passed would be 404 here: this node has no backend.
    assert_problem(no_backend_node.chat(body), 400, detail, kind="validation")


def test_a_body_over_10_mib_is_413(no_backend_node: ChatNode) -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * (10 * 1024 * 1024)}]})
    assert_problem(no_backend_node.chat(body.encode()), 413, "Request body exceeds maximum size", kind="validation")


def test_a_node_without_a_backend_answers_404(no_backend_node: ChatNode) -> None:
    resp = no_backend_node.chat({"model": "gemma3:270m", "messages": [{"role": "user", "content": "hi"}]})
    assert_problem(resp, 404, "no inference backend", kind="not_found", title="Not Found")
    assert no_backend_node.calls(404, "refused") == 1


def test_a_backend_that_is_down_is_502(start_node: NodeFactory) -> None:
    node = start_node(f"http://127.0.0.1:{free_port()}", ("gemma3:270m",))  # nothing listens there
    resp = node.chat({"model": "gemma3:270m", "messages": [{"role": "user", "content": "hi"}]})
    assert_problem(resp, 502, "inference backend unreachable", kind="internal")
    assert node.calls(502, "failed") == 1


# ================================================================= the pass-through


def test_a_non_stream_answer_is_the_backends_own(
    node: ChatNode, real_backend: InferenceBackend, real_model: str
) -> None:
    body = chat_body(real_model, stream=False, num_predict=16)
    own = direct(real_backend, body)
    relayed = node.chat(body)
    assert relayed.status_code == own.status_code == 200, relayed.text
    assert relayed.headers["Content-Type"] == own.headers["Content-Type"]
    assert relayed.headers["Content-Type"].startswith("application/json")
    assert relayed.headers["Content-Length"] == str(len(relayed.content))
    answer = relayed.json()
    assert answer["done"] is True and answer["message"]["content"].strip(), answer
    assert answer["eval_count"] == own.json()["eval_count"]  # options reached the backend
    assert without_timings(answer) == without_timings(own.json())


@pytest.mark.parametrize(
    "extra",
    [{"model": "no-such-model:1b"}, {"think": True}, {"format": 12}],
    ids=["unknown-model", "think", "bad-format"],
)
def test_the_backends_refusals_come_back_as_it_sent_them(
    node: ChatNode, real_backend: InferenceBackend, real_model: str, extra: dict[str, Any]
) -> None:
    # Every key reaches the backend: were "think" or "format" dropped, the node would answer 200.
    body = {**chat_body(real_model, stream=False), **extra}
    own = direct(real_backend, body)
    relayed = node.chat(body)
    assert 400 <= own.status_code < 500, own.text
    assert relayed.status_code == own.status_code
    assert relayed.headers["Content-Type"] == own.headers["Content-Type"] != PROBLEM
    assert relayed.json() == own.json() and "error" in relayed.json()


def test_a_stream_reaches_the_client_line_by_line_while_the_model_writes(node: ChatNode, real_model: str) -> None:
    conn = node.open(chat_body(real_model, stream=True, num_predict=48, content=LONG_PROMPT))
    try:
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == NDJSON
        assert response.getheader("Transfer-Encoding") == "chunked"
        arrivals: list[tuple[float, dict[str, Any]]] = []
        while line := response.readline():
            arrivals.append((time.monotonic(), json.loads(line)))
    finally:
        conn.close()
    assert len(arrivals) >= 10, arrivals
    final = arrivals[-1][1]
    assert final["done"] is True and all(obj["done"] is False for _, obj in arrivals[:-1])
    generating = final["eval_duration"] / 1e9  # how long the backend generated, by its own clock
    assert generating > 0.3, final
    # The first line was on the client while most of the generation was still to come.
    assert arrivals[-1][0] - arrivals[0][0] > generating / 2, (arrivals[0][0], arrivals[-1][0], generating)
    assert len({round(at, 3) for at, _ in arrivals}) > len(arrivals) / 2  # one by one, not in bursts


# ================================================================ time and departure


def test_a_client_that_leaves_mid_stream_stops_the_backend(node: ChatNode, real_model: str, long_run: float) -> None:
    conn = node.open(long_body(real_model))
    response = conn.getresponse()
    assert response.status == 200
    for _ in range(3):
        assert json.loads(response.readline())["done"] is False
    # The node answers a stream with Connection: close, so the socket is the response's now.
    response.close()
    conn.close()
    left = time.monotonic()
    # Had the node kept reading, the backend would finish the abandoned generation first:
    # most of long_run from now. It serves the next request at once instead.
    answer = node.chat(chat_body(real_model, stream=False, num_predict=4))
    waited = time.monotonic() - left
    assert answer.status_code == 200, answer.text
    assert waited < min(5.0, long_run / 2), f"the next call waited {waited:.1f} s"
    assert wait_for(lambda: node.calls(200, "canceled") == 1, 5), node.families()


def test_a_client_that_leaves_while_its_call_waits_for_the_model_ends_the_call(
    node: ChatNode, real_model: str, blocker: Callable[[], Blocker]
) -> None:
    busy = blocker()
    conn = node.open(chat_body(real_model, stream=True))
    time.sleep(1.0)  # the call now waits behind the blocker, and nothing is written to anyone
    conn.close()
    left = time.monotonic()
    # Noticed while the backend was silent, not once its first token failed to send.
    assert wait_for(lambda: node.calls(499, "canceled") == 1, 3), node.families()
    assert time.monotonic() - left < 3
    busy.assert_generating()  # the model is still busy with the other generation


def test_calls_past_the_limit_are_503_until_one_ends(
    node: ChatNode, real_model: str, blocker: Callable[[], Blocker]
) -> None:
    busy = blocker()
    waiting = [node.open(chat_body(real_model, stream=True, num_predict=1)) for _ in range(MAX_CALLS)]
    try:
        time.sleep(0.5)  # all of them reached the node and wait for the model
        resp = node.chat(chat_body(real_model, stream=False))
        assert_problem(resp, 503, "Too many inference calls on this node", kind="unavailable")
        assert resp.headers["Retry-After"] == "1"
        waiting.pop().close()
        assert wait_for(lambda: node.calls(499, "canceled") == 1, 3)
        busy.stop()
        resp = node.chat(chat_body(real_model, stream=False, num_predict=1))
        assert resp.status_code == 200, resp.text
    finally:
        for conn in waiting:
            conn.close()


def test_a_backend_that_does_not_answer_in_time_is_504(
    start_node: NodeFactory, real_backend: InferenceBackend, real_model: str, blocker: Callable[[], Blocker]
) -> None:
    node = start_node(real_backend.base_url, (real_model,), timeout=1)
    blocker()
    started = time.monotonic()
    resp = node.chat(chat_body(real_model, stream=False))
    assert_problem(resp, 504, "inference backend timed out", kind="internal")
    assert 1 <= time.monotonic() - started < 3
    assert node.calls(504, "timeout") == 1


def test_a_stream_that_outlives_the_timeout_ends_with_ollamas_error_line(
    start_node: NodeFactory, real_backend: InferenceBackend, real_model: str
) -> None:
    node = start_node(real_backend.base_url, (real_model,), timeout=2)
    started = time.monotonic()
    resp = node.chat(long_body(real_model), stream=True)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == NDJSON
    lines = [json.loads(line) for line in resp.iter_lines() if line]  # ends cleanly: no broken chunking
    assert 2 <= time.monotonic() - started < 4
    assert lines[-1] == {"error": "inference backend timed out"}
    assert len(lines) > 2 and all(line["done"] is False for line in lines[:-1])
    assert node.calls(200, "timeout") == 1


# ============================================================== logs and metrics


def test_each_call_is_logged_and_counted_without_its_messages(
    node: ChatNode, real_model: str, json_log_lines: io.StringIO
) -> None:
    secret = "my password is hunter2-do-not-log"
    resp = node.chat(
        chat_body(real_model, stream=False, content=secret), headers={"X-Request-Id": "chat-from-orchestrator"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-Request-Id"] == "chat-from-orchestrator"
    unknown = node.chat({**chat_body(real_model, stream=True), "model": "no-such-model:1b"})
    assert unknown.status_code == 404

    assert wait_for(lambda: node.calls(404, "completed") == 1, 2)
    records = [json.loads(line) for line in json_log_lines.getvalue().splitlines()]
    calls = [r for r in records if r["logger"] == "node_agent.inference_chat"]
    assert [(r["model"], r["stream"], r["status"], r["outcome"]) for r in calls] == [
        (real_model, False, 200, "completed"),
        ("no-such-model:1b", True, 404, "completed"),
    ]
    assert calls[0]["bytes"] == len(resp.content) and calls[1]["bytes"] == len(unknown.content)
    assert calls[0]["request_id"] == "chat-from-orchestrator"
    assert 0 < calls[0]["duration_ms"] < 120_000
    assert secret not in json_log_lines.getvalue()

    families = node.families()
    assert value(families, "cynode_node_inference_chat_calls_total", status="200", outcome="completed") == 1
    assert value(families, "cynode_node_inference_chat_duration_seconds_count", outcome="completed") == 2


def test_the_route_is_served_only_by_post(no_backend_node: ChatNode) -> None:
    resp = requests.get(f"{no_backend_node.url}{CHAT_PATH}", timeout=10)
    assert_problem(resp, 405, "Method not allowed on this route")


def test_chat_calls_never_take_the_threads_jobs_and_health_checks_need(
    node: ChatNode, real_model: str, blocker: Callable[[], Blocker]
) -> None:
    blocker()
    # As many waiting calls as the server has threads: only MAX_CALLS of them may hold one.
    calls = [node.open(chat_body(real_model, stream=True, num_predict=1)) for _ in range(node.threads)]
    try:
        time.sleep(0.5)
        started = time.monotonic()
        assert requests.get(f"{node.url}/healthz", timeout=10).status_code == 200
        assert time.monotonic() - started < 1.0
        assert wait_for(lambda: node.calls(503, "refused") == len(calls) - MAX_CALLS, 3), node.families()
    finally:
        for conn in calls:
            conn.close()
