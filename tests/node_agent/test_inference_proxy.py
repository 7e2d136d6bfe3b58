"""The per-job inference proxy (docs/wire_contract.md#inference-proxy) and its wiring into the executor.

Two kinds of upstream are used, and each test says which:

- the REAL backend: the embedded llama.cpp server of ``plugins/cynode-llamacpp``
  (entry point ``llamacpp`` in the ``cynode`` group) on its real GGUF model.
  These tests FAIL, never skip, when that plugin is not installed.
- a STAND-IN: a tiny Ollama-API imitation on 127.0.0.1 in this file, used
  only where a test must control or observe the upstream exactly (hold a
  stream open between two chunks, prove that a refused request never reached
  the backend, answer slower than the proxy's timeout).

Sandbox jobs run in real Podman containers from ``localhost/cynode-sandbox:python``
(scripts/build-python-sandbox-image). Only loopback addresses are ever contacted.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from node_helpers import WORKER_TOKEN, Worker, WorkerFactory, job_body, make_settings, run_in_thread

from cynode_core.contract import InferenceBackend, SandboxRuntime
from cynode_core.orchestrator.services.prompt_job import PROMPT_SCRIPT
from node_agent.inference_policy import InferencePolicy
from node_agent.inference_proxy import SANDBOX_PROXY_URL, SOCKET_NAME, InferenceProxy
from node_agent.job_inference import NO_INFERENCE_NOTE
from node_agent.unix_proxy import MAX_BODY_BYTES, ProxyError, UnixHTTPConnection, connect_unix

PYTHON_IMAGE = "localhost/cynode-sandbox:python"
PROMPT = "The capital of France is"
# What proxies in front of the stand-in let jobs ask for: its one model, the default bounds.
STAND_IN_POLICY = InferencePolicy(models=("stand-in:latest",))


# ------------------------------------------------------------------ the stand-in


class StandInOllama:
    """STAND-IN for an Ollama server (not the real backend): /api/tags, /api/generate, recorded requests.

    ``POST /api/generate`` with ``"stream": true`` sends its first NDJSON line,
    then waits for ``release`` before the last one, so a test can prove the
    first line crossed the proxy while the upstream was still answering.
    A ``"sleep"`` field delays the answer; ``barrier`` (when set) makes every
    generate wait until that many are in flight at once.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()
        self.barrier: threading.Barrier | None = None
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _record(self) -> bytes:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stand_in.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body_len": len(body),
                        "body": body,
                    }
                )
                return body

            def _json(self, obj: object) -> None:
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._record()
                if self.path == "/api/tags":
                    self._json({"models": [{"name": "stand-in:latest", "model": "stand-in:latest"}]})
                elif self.path == "/api/version":
                    self._json({"version": "0.0.0-stand-in"})
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                request = json.loads(self._record() or b"{}")
                if stand_in.barrier is not None:
                    stand_in.barrier.wait()
                time.sleep(float(request.get("sleep", 0)))
                if not request.get("stream", True):
                    self._json({"model": "stand-in:latest", "response": "Paris (stand-in)", "done": True})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self._chunk({"response": "Par", "done": False})
                stand_in.released_in_time = stand_in.release.wait(10)
                self._chunk({"response": "is", "done": True})
                self.wfile.write(b"0\r\n\r\n")

            def _chunk(self, obj: object) -> None:
                line = json.dumps(obj).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()

        self.released_in_time = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_in() -> Iterator[StandInOllama]:
    server = StandInOllama()
    yield server
    server.release.set()
    server.close()


@pytest.fixture
def stand_in_proxy(stand_in: StandInOllama, tmp_path: Path) -> Iterator[InferenceProxy]:
    """A proxy in front of the STAND-IN."""
    with InferenceProxy(tmp_path / "proxy" / str(uuid.uuid4()), stand_in.url, policy=STAND_IN_POLICY) as proxy:
        proxy.wait_ready()
        yield proxy


# ------------------------------------------------------------- the real backend


@pytest.fixture
def real_proxy(real_backend: InferenceBackend, tmp_path: Path) -> Iterator[InferenceProxy]:
    """A proxy in front of the REAL backend."""
    policy = InferencePolicy(tuple(real_backend.models()))
    with InferenceProxy(tmp_path / "proxy" / str(uuid.uuid4()), real_backend.base_url, policy=policy) as proxy:
        proxy.wait_ready()
        yield proxy


# ---------------------------------------------------------------------- helpers


def call(
    proxy: InferenceProxy | Path,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 130,
) -> tuple[int, dict[str, str], bytes]:
    """One request over the proxy's Unix socket: ``(status, headers, body)``."""
    socket_path = proxy.socket_path if isinstance(proxy, InferenceProxy) else proxy
    conn = UnixHTTPConnection(socket_path, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def generate_body(model: str, *, stream: bool, **extra: Any) -> bytes:
    return json.dumps(
        {"model": model, "prompt": PROMPT, "stream": stream, "options": {"num_predict": 8, "temperature": 0}, **extra}
    ).encode()


def backend_port(base_url: str) -> int:
    port = urlsplit(base_url).port
    assert port is not None
    return port


# ============================================================ proxy, real backend


def test_tags_and_version_pass_through_to_the_real_backend(
    real_proxy: InferenceProxy, real_backend: InferenceBackend
) -> None:
    status, headers, body = call(real_proxy, "GET", "/api/tags")
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    names = {m["name"] for m in json.loads(body)["models"]}
    assert names == set(real_backend.models())

    status, _, body = call(real_proxy, "GET", "/api/version")
    assert status == 200 and json.loads(body)["version"], body


def test_a_non_streaming_generate_returns_the_real_models_answer(real_proxy: InferenceProxy, real_model: str) -> None:
    status, _, body = call(
        real_proxy,
        "POST",
        "/api/generate",
        generate_body(real_model, stream=False),
        {"Content-Type": "application/json"},
    )
    assert status == 200, body
    answer = json.loads(body)
    assert answer["done"] is True
    assert answer["response"].strip(), answer


def test_a_streaming_generate_arrives_as_ndjson_lines_while_the_model_writes(
    real_proxy: InferenceProxy, real_model: str
) -> None:
    conn = UnixHTTPConnection(real_proxy.socket_path, timeout=130)
    try:
        conn.request(
            "POST",
            "/api/generate",
            body=generate_body(real_model, stream=True),
            headers={"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        assert response.status == 200
        arrivals: list[tuple[float, dict[str, Any]]] = []
        while line := response.readline():
            if line.strip():
                arrivals.append((time.monotonic(), json.loads(line)))
    finally:
        conn.close()
    assert len(arrivals) >= 3, arrivals  # one line per token, then the final one
    assert arrivals[-1][1]["done"] is True
    assert all(obj["done"] is False for _, obj in arrivals[:-1])
    assert "".join(obj.get("response", "") for _, obj in arrivals).strip()
    # The lines came one by one, not in one burst at the end.
    assert arrivals[-1][0] - arrivals[0][0] > 0.01


def test_proxy_overhead_per_request_is_small(real_proxy: InferenceProxy, real_backend: InferenceBackend) -> None:
    """GET /api/tags through the proxy vs directly (new connection each, as the proxy does): p50 overhead."""
    host, port = urlsplit(real_backend.base_url).hostname, backend_port(real_backend.base_url)

    def direct() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/api/tags")
        conn.getresponse().read()
        conn.close()

    def proxied() -> None:
        assert call(real_proxy, "GET", "/api/tags")[0] == 200

    def p50(fn: Any) -> float:
        samples = []
        for _ in range(40):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    direct(), proxied()  # warm up
    overhead = p50(proxied) - p50(direct)
    assert overhead < 0.02, f"proxy overhead p50 {overhead * 1000:.1f} ms"


# ================================================================ proxy, stand-in


def test_healthz_socket_mode_and_removal(stand_in: StandInOllama, tmp_path: Path) -> None:
    socket_dir = tmp_path / "state" / "proxy" / str(uuid.uuid4())
    proxy = InferenceProxy(socket_dir, stand_in.url, policy=STAND_IN_POLICY)
    proxy.start()
    try:
        proxy.wait_ready()
        assert proxy.socket_path == socket_dir / SOCKET_NAME
        mode = proxy.socket_path.stat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o666
        assert stat.S_IMODE(socket_dir.parent.stat().st_mode) == 0o700  # no other host user gets in
        status, headers, body = call(proxy, "GET", "/healthz")
        assert (status, body) == (200, b"ok")
        assert headers["Content-Type"].startswith("text/plain")
        assert stand_in.requests == []  # healthz is the proxy's own
    finally:
        proxy.close()
    assert not socket_dir.exists()
    proxy.close()  # idempotent


def test_streaming_is_relayed_chunk_by_chunk(stand_in_proxy: InferenceProxy, stand_in: StandInOllama) -> None:
    """STAND-IN holds the stream after its first line until the client has read that line through the proxy."""
    conn = UnixHTTPConnection(stand_in_proxy.socket_path, timeout=30)
    try:
        conn.request(
            "POST",
            "/api/generate",
            body=b'{"model": "stand-in", "stream": true}',
            headers={"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "application/x-ndjson"
        first = json.loads(response.readline())
        assert first == {"response": "Par", "done": False}
        stand_in.release.set()  # only now does the upstream write the rest
        rest = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    finally:
        conn.close()
    assert rest == [{"response": "is", "done": True}]
    assert stand_in.released_in_time, "the first line only arrived after the upstream gave up waiting"


def test_a_non_streaming_answer_keeps_its_length_and_type(stand_in_proxy: InferenceProxy) -> None:
    status, headers, body = call(
        stand_in_proxy, "POST", "/api/generate", b'{"stream": false}', {"Content-Type": "application/json"}
    )
    assert status == 200
    assert headers["Content-Length"] == str(len(body))
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(body)["response"] == "Paris (stand-in)"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/pull"),
        ("DELETE", "/api/delete"),
        ("POST", "/api/create"),
        ("POST", "/api/copy"),
        ("POST", "/api/push"),
        ("POST", "/api/blobs/sha256:00"),
        ("GET", "/api/ps"),
        ("GET", "/"),
        ("GET", "/api/tags/../pull"),
        ("POST", "//api/pull"),
        ("GET", "/v1/models"),
    ],
)
def test_endpoints_outside_the_list_are_refused_and_never_reach_the_backend(
    stand_in_proxy: InferenceProxy,
    stand_in: StandInOllama,
    method: str,
    path: str,
) -> None:
    status, headers, body = call(stand_in_proxy, method, path, b'{"model": "x"}')
    assert status == 403
    assert headers["Content-Type"].startswith("text/plain")
    assert body == b"forbidden: not an allowed inference endpoint"
    assert stand_in.requests == []


def test_a_wrong_method_on_an_allowed_path_is_405(stand_in_proxy: InferenceProxy, stand_in: StandInOllama) -> None:
    status, headers, _ = call(stand_in_proxy, "GET", "/api/generate")
    assert (status, headers["Allow"]) == (405, "POST")
    status, headers, _ = call(stand_in_proxy, "POST", "/api/tags")
    assert (status, headers["Allow"]) == (405, "GET")
    assert stand_in.requests == []


def test_a_body_over_10_mib_is_413_and_never_reaches_the_backend(
    stand_in_proxy: InferenceProxy, stand_in: StandInOllama
) -> None:
    status, headers, body = call(
        stand_in_proxy, "POST", "/api/generate", b"x" * (MAX_BODY_BYTES + 1), {"Content-Type": "application/json"}
    )
    assert (status, body) == (413, b"request body too large")
    assert headers["Content-Type"].startswith("text/plain")
    assert stand_in.requests == []

    # Announced with Expect: 100-continue, the body is refused before it is sent.
    sock = connect_unix(stand_in_proxy.socket_path, 10)
    try:
        sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 11534336\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 413 ")
    finally:
        sock.close()

    # Chunked: counted as it arrives.
    conn = UnixHTTPConnection(stand_in_proxy.socket_path, timeout=30)
    try:
        chunks = (b"y" * (1024 * 1024) for _ in range(11))
        conn.request(
            "POST", "/api/generate", body=chunks, encode_chunked=True, headers={"Transfer-Encoding": "chunked"}
        )
        response = conn.getresponse()
        assert (response.status, response.read()) == (413, b"request body too large")
    finally:
        conn.close()
    assert stand_in.requests == []

    # Exactly at the cap is fine (a body the policy leaves byte for byte as it is).
    head, tail = b'{"model":"stand-in:latest","stream":false,"pad":"', b'"}'
    exact = head + b"z" * (MAX_BODY_BYTES - len(head) - len(tail)) + tail
    status, _, _ = call(stand_in_proxy, "POST", "/api/generate", exact)
    assert status == 200
    assert [r["body_len"] for r in stand_in.requests] == [MAX_BODY_BYTES]


def test_no_credentials_or_hop_headers_are_forwarded(stand_in_proxy: InferenceProxy, stand_in: StandInOllama) -> None:
    status, _, _ = call(
        stand_in_proxy,
        "POST",
        "/api/chat",
        b'{"stream": false}',
        {
            "Content-Type": "application/json",
            "Authorization": "Bearer sandbox-secret",
            "Cookie": "a=b",
            "X-Forwarded-For": "10.0.0.1",
            "Proxy-Authorization": "Basic eA==",
            "User-Agent": "job/1",
        },
    )
    assert status == 200
    [seen] = stand_in.requests
    forwarded = {name.lower() for name in seen["headers"]}
    assert forwarded <= {"host", "content-type", "content-length", "user-agent", "accept-encoding", "accept"}
    assert seen["headers"]["User-Agent"] == "job/1"


def test_model_calls_are_pinned_to_the_nodes_policy(stand_in: StandInOllama, tmp_path: Path) -> None:
    """STAND-IN records each body it gets: the pinned one; refused calls never reach it.

    The rules themselves are test_inference_policy.py's; this is the proxy applying them.
    """
    policy = InferencePolicy(models=("stand-in:latest",), max_ctx=2048, max_predict=64)
    with InferenceProxy(tmp_path / "p", stand_in.url, policy=policy) as proxy:
        asked = {
            "model": "Stand-In",
            "prompt": PROMPT,
            "stream": False,
            "keep_alive": 0,
            "options": {"num_ctx": 131072, "num_predict": 100000, "temperature": 0},
        }
        status, _, body = call(proxy, "POST", "/api/generate", json.dumps(asked).encode())
        assert (status, json.loads(body)["response"]) == (200, "Paris (stand-in)")
        [seen] = stand_in.requests
        assert json.loads(seen["body"]) == {
            "model": "stand-in:latest",
            "prompt": PROMPT,
            "stream": False,
            "options": {"num_ctx": 2048, "num_predict": 64, "temperature": 0},
        }
        assert seen["headers"]["Content-Length"] == str(len(seen["body"]))

        refusals = [
            ("/api/chat", {"model": "llama3:70b", "messages": []}, 403, "is not served to jobs on this node"),
            ("/api/show", {"name": "llama3"}, 403, "is not served to jobs on this node"),
            ("/api/generate", {"options": {"num_predict": -1}}, 400, "options.num_predict must be at least 1"),
            ("/api/embed", ["not", "an", "object"], 400, "request body must be a JSON object"),
            ("/api/generate", {"model": "stand-in", "KEEP_ALIVE": 0}, 400, "must be spelt keep_alive"),
        ]
        for path, refused, expected, words in refusals:
            status, headers, body = call(proxy, "POST", path, json.dumps(refused).encode())
            assert status == expected, (path, body)
            assert headers["Content-Type"] == "application/json; charset=utf-8"
            assert words in json.loads(body)["error"]
        assert len(stand_in.requests) == 1  # none of them reached the backend


def test_concurrent_requests_of_one_job_are_served_at_once(
    stand_in_proxy: InferenceProxy, stand_in: StandInOllama
) -> None:
    """STAND-IN answers no generate until 6 are in flight: a serialising proxy would deadlock here."""
    stand_in.barrier = threading.Barrier(6, timeout=15)
    results: list[int] = []

    def one() -> None:
        results.append(call(stand_in_proxy, "POST", "/api/generate", b'{"stream": false}', timeout=30)[0])

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [200] * 6


def test_a_backend_slower_than_the_request_timeout_is_504(stand_in: StandInOllama, tmp_path: Path) -> None:
    with InferenceProxy(tmp_path / "p", stand_in.url, policy=STAND_IN_POLICY, request_timeout=0.5) as proxy:
        start = time.monotonic()
        status, _, body = call(proxy, "POST", "/api/generate", b'{"stream": false, "sleep": 3}')
        assert (status, body) == (504, b"inference backend timed out")
        assert time.monotonic() - start < 2.5


def test_a_stream_that_outlives_the_timeout_is_cut(stand_in: StandInOllama, tmp_path: Path) -> None:
    with InferenceProxy(tmp_path / "p", stand_in.url, policy=STAND_IN_POLICY, request_timeout=1.0) as proxy:
        conn = UnixHTTPConnection(proxy.socket_path, timeout=10)
        conn.request("POST", "/api/generate", body=b'{"stream": true}')
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.readline())["done"] is False
        start = time.monotonic()
        with pytest.raises(http.client.IncompleteRead):
            response.read()  # the stand-in holds the rest back; the proxy gives up after 1 s
        assert time.monotonic() - start < 3
        conn.close()


def test_a_backend_that_is_down_is_502(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with InferenceProxy(tmp_path / "p", f"http://127.0.0.1:{port}", policy=STAND_IN_POLICY) as proxy:
        proxy.wait_ready()  # health is the proxy's own, not the backend's
        status, _, body = call(proxy, "GET", "/api/tags")
        assert (status, body) == (502, b"inference backend unavailable")


def test_close_cuts_streams_in_flight(stand_in_proxy: InferenceProxy) -> None:
    conn = UnixHTTPConnection(stand_in_proxy.socket_path, timeout=10)
    conn.request("POST", "/api/generate", body=b'{"stream": true}')
    response = conn.getresponse()
    response.readline()
    start = time.monotonic()
    stand_in_proxy.close()
    assert time.monotonic() - start < 1.0
    with pytest.raises((http.client.IncompleteRead, OSError)):
        response.read()
    conn.close()
    assert not stand_in_proxy.socket_dir.exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:11434",
        "http://example.com:11434",
        "https://127.0.0.1:11434",
        "http://0.0.0.0:11434",
        "unix:///tmp/x",
        "http://127.0.0.1:bad",
    ],
)
def test_only_a_loopback_http_backend_is_accepted(url: str, tmp_path: Path) -> None:
    with pytest.raises(ProxyError):
        InferenceProxy(tmp_path / "p", url, policy=STAND_IN_POLICY)
    assert not (tmp_path / "p").exists()


def test_the_sandbox_url_escapes_the_socket_path() -> None:
    assert SANDBOX_PROXY_URL == "http+unix://%2Frun%2Fcynode%2Finference-proxy.sock"


# ================================================= sandbox jobs via the Worker API


SANDBOX_CHECKS = r"""
import os, socket, stat, sys
port = int(sys.argv[1])
print("NET", sorted(os.listdir("/sys/class/net")))
s = socket.socket()
s.settimeout(3)
try:
    s.connect(("127.0.0.1", port))
    print("TCP connected")
except OSError as exc:
    print("TCP failed", type(exc).__name__)
st = os.stat("/run/cynode/inference-proxy.sock")
print("SOCK", stat.S_ISSOCK(st.st_mode), oct(stat.S_IMODE(st.st_mode)), os.getuid())
print("URL", os.environ.get("INFERENCE_PROXY_URL"))
print("TCPURLS", sorted(k for k, v in os.environ.items() if "http://" in v or k == "OLLAMA_BASE_URL"))
sys.stdout.flush()
"""


@pytest.fixture
def inference_worker(start_worker: WorkerFactory) -> Any:
    """A Worker API whose executor proxies use_inference jobs to the given backend URL."""

    def start(base_url: str, models: tuple[str, ...] = STAND_IN_POLICY.models) -> Worker:
        worker = start_worker(inference_backend="llamacpp")
        worker.executor.set_inference_backend(base_url, models)
        return worker

    return start


def proxy_dirs(worker: Worker) -> list[Path]:
    root = worker.settings.resolved_state_dir / "proxy"
    return list(root.iterdir()) if root.exists() else []


def test_a_sandbox_job_gets_a_real_model_answer_over_the_socket_with_no_network(
    inference_worker: Any,
    real_backend: InferenceBackend,
    real_model: str,
) -> None:
    """REAL backend, real Podman, the python image, the prompt task's own script."""
    worker = inference_worker(real_backend.base_url, (real_model,))
    port = backend_port(real_backend.base_url)
    script = SANDBOX_CHECKS + "\nsys.argv = sys.argv[:1]\n" + PROMPT_SCRIPT
    body = job_body(
        ["python3", "-c", script, str(port)],
        image="python:alpine",
        use_inference=True,
        timeout_seconds=180,
        env={"CYNODE_PROMPT": PROMPT, "CYNODE_MODEL": real_model},
    )
    # Worker.run allows 60 s; a cold model on 2 CPU cores gets more room here.
    response = requests.post(
        f"{worker.url}/v1/worker/jobs:run", json=body, timeout=240, headers={"Authorization": f"Bearer {WORKER_TOKEN}"}
    )
    result = response.json()
    assert result["status"] == "completed", result
    lines = result["stdout"].splitlines()
    assert "NET ['lo']" in lines
    assert "TCP failed ConnectionRefusedError" in lines  # the backend's port is not reachable from inside
    assert "SOCK True 0o666 65534" in lines
    assert f"URL {SANDBOX_PROXY_URL}" in lines
    assert "TCPURLS []" in lines
    answer = "\n".join(lines[lines.index("TCPURLS []") + 1 :]).strip()
    assert answer and answer != "(no response)" and "[Ollama" not in answer, result
    assert proxy_dirs(worker) == []  # proxy and socket are gone after the job


def test_an_oversize_request_from_a_sandbox_is_413_and_the_backend_gets_nothing(
    inference_worker: Any,
    stand_in: StandInOllama,
) -> None:
    """STAND-IN upstream (so we can see it received nothing); real Podman and the python image."""
    worker = inference_worker(stand_in.url)
    script = r"""
import http.client, json, os, socket, urllib.parse
path = urllib.parse.unquote(os.environ["INFERENCE_PROXY_URL"][len("http+unix://"):])
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(path)
def call(method, url, body=None):
    c = C("x", timeout=30); c.request(method, url, body=body); r = c.getresponse()
    out = (r.status, r.read().decode()); c.close(); return out
print(call("POST", "/api/generate", b"x" * (11 * 1024 * 1024)))
print(call("POST", "/api/pull", b"{}"))
print(call("GET", "/healthz"))
print(call("POST", "/api/generate", json.dumps({"stream": False}).encode())[0])
"""
    result = worker.run(job_body(["python3", "-c", script], image="python:alpine", use_inference=True)).json()
    assert result["status"] == "completed", result
    assert result["stdout"].splitlines() == [
        "(413, 'request body too large')",
        "(403, 'forbidden: not an allowed inference endpoint')",
        "(200, 'ok')",
        "200",
    ]
    assert [(r["method"], r["path"]) for r in stand_in.requests] == [("POST", "/api/generate")]
    assert stand_in.requests[0]["body_len"] < 100
    assert proxy_dirs(worker) == []


def test_a_job_without_use_inference_has_no_socket_and_no_url(inference_worker: Any, stand_in: StandInOllama) -> None:
    worker = inference_worker(stand_in.url)
    result = worker.run(job_body(["sh", "-c", "ls -A /run/cynode; env"])).json()
    assert result["status"] == "completed", result
    assert "inference-proxy.sock" not in result["stdout"]
    assert "INFERENCE_PROXY_URL" not in result["stdout"]


def test_use_inference_on_a_node_without_a_backend_runs_plainly_and_says_so(worker: Worker) -> None:
    assert worker.executor.inference_backend_url is None
    result = worker.run(
        job_body(["sh", "-c", "echo ${INFERENCE_PROXY_URL:-none}; ls -A /run/cynode"], use_inference=True)
    ).json()
    assert (result["status"], result["stdout"]) == ("completed", "none\n"), result
    assert result["stderr"] == NO_INFERENCE_NOTE
    assert proxy_dirs(worker) == []


def test_a_proxy_that_cannot_start_fails_the_job_before_any_container(
    inference_worker: Any,
    podman_runtime: SandboxRuntime,
) -> None:
    worker = inference_worker("http://10.1.2.3:11434")  # not loopback: refused
    body = job_body(["sh", "-c", "echo ran"], use_inference=True)
    result = worker.run(body).json()
    assert (result["status"], result["exit_code"], result["stdout"]) == ("failed", -1, ""), result
    assert result["stderr"].startswith("proxy start: ")
    assert "loopback" in result["stderr"]
    assert proxy_dirs(worker) == []


def test_a_proxy_that_never_turns_healthy_fails_the_job(
    inference_worker: Any,
    stand_in: StandInOllama,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = inference_worker(stand_in.url)
    worker.executor.inference.ready_timeout = 0.5
    monkeypatch.setattr(InferenceProxy, "_health_problem", lambda self, timeout: "simulated")
    start = time.monotonic()
    result = worker.run(job_body(["sh", "-c", "echo ran"], use_inference=True)).json()
    assert time.monotonic() - start < 5
    assert (result["status"], result["exit_code"], result["stdout"]) == ("failed", -1, ""), result
    assert result["stderr"].startswith("proxy readiness: ")
    assert "simulated" in result["stderr"]
    assert proxy_dirs(worker) == []


def test_a_proxy_left_by_a_crashed_agent_is_removed_at_start(start_worker: WorkerFactory, tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = make_settings(home)
    stale = settings.resolved_state_dir / "proxy" / str(uuid.uuid4())
    stale.mkdir(parents=True)
    (stale / SOCKET_NAME).write_text("")
    worker = start_worker(home=home)
    assert proxy_dirs(worker) == []
    assert os.path.isdir(settings.resolved_state_dir)


def test_connections_over_the_cap_wait_for_a_free_slot(stand_in: StandInOllama, tmp_path: Path) -> None:
    with InferenceProxy(tmp_path / "p", stand_in.url, policy=STAND_IN_POLICY, max_connections=2) as proxy:
        held = [connect_unix(proxy.socket_path, 5) for _ in range(2)]  # two idle connections fill the cap
        thread, box = run_in_thread(lambda: call(proxy, "GET", "/api/tags", timeout=10))
        thread.join(0.5)
        assert thread.is_alive() and stand_in.requests == []  # queued, not refused
        held[0].close()
        thread.join(5)
        assert box["result"][0] == 200
        held[1].close()
