"""Fixtures of the wire-contract tests (the orchestrator ones come from tests/conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from wire import targets

WORKER_TOKEN = "wire-worker-token-0123456789abcdef"


class _FakeNodeHandler(BaseHTTPRequestHandler):
    """A node's Worker API as far as the orchestrator calls it while the scenarios run:
    ``GET /readyz`` (its readiness probe) and ``POST ...:cancel``. Never recorded."""

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/readyz":
            self._answer(200, b"ready", "text/plain; charset=utf-8")
        else:
            self._answer(404, b"", "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(200, b'{"version": 1, "canceled": true}\n', "application/json")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_node_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeNodeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def sandbox_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with targets.podman_runtime(tmp_path_factory.mktemp("wire-podman")) as runtime:
        yield runtime


@pytest.fixture
def worker(sandbox_runtime: Any, tmp_path: Path) -> Iterator[targets.Worker]:
    """A Worker API with ONE job slot (so a second job meets 503), not yet marked ready."""
    with targets.worker_api(sandbox_runtime, tmp_path / "node-home", WORKER_TOKEN, job_slots=1) as w:
        yield w
