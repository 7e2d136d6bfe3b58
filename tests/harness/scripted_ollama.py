"""A SCRIPTED stand-in for Ollama's chat API, for agent tests that must not depend on a model being clever.

Why a stand-in: the agent tests assert mechanics (each emitted call was
checked, executed, audited and fed back; limits stop a loop), which needs
answers known in advance. It follows Ollama's published REST API
(docs.ollama.com/api) for what the orchestrator's chat router uses:
``GET /api/version`` (``{"version"}``, what a node's Ollama backend probes),
``GET /api/tags`` (``{"models": [{"name", "model", ...}]}``) and
``POST /api/chat`` (``stream`` true by default: NDJSON lines with
``message.content`` and ``done: false``, then a last ``done: true`` line
with ``done_reason`` and counts; ``stream: false``: one JSON object).

Each ``/api/chat`` request takes the next answer of the script: a string,
or a function of the request body giving one (to answer with an id a tool
result showed). An empty script answers ``{"action": "reply"}`` to a request
with ``format`` and a fixed sentence otherwise. Every request body is kept.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = str | Callable[[dict[str, Any]], str]
REPLY_TEXT = "Done: the task is queued."
VERSION = "0.6.0"


class ScriptedOllama:
    """The stand-in on an ephemeral loopback port; ``script`` is consumed one answer per chat request."""

    def __init__(self, model: str = "scripted:1b", script: Sequence[Answer] = ()) -> None:
        self.model = model
        self.script: list[Answer] = list(script)
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="scripted-ollama", daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, body: dict[str, Any]) -> str:
        with self._lock:
            self.requests.append(body)
            step = self.script.pop(0) if self.script else None
        if step is None:
            return json.dumps({"action": "reply"}) if body.get("format") else REPLY_TEXT
        return step(body) if callable(step) else step

    def decide_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("format")]

    def reply_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if not r.get("format")]


def _handler(stub: ScriptedOllama) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def do_GET(self) -> None:
            if self.path == "/api/version":
                self._send(200, json.dumps({"version": VERSION}).encode(), "application/json")
                return
            if self.path != "/api/tags":
                self._send(404, b"404 page not found", "text/plain")
                return
            tag = {"name": stub.model, "model": stub.model, "size": 1, "digest": "0" * 64, "details": {}}
            self._send(200, json.dumps({"models": [tag]}).encode(), "application/json")

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/api/chat":
                self._send(404, b"404 page not found", "text/plain")
                return
            body = json.loads(raw)
            text = stub.answer(body)
            last = {"model": body.get("model"), "message": {"role": "assistant", "content": ""}, "done": True}
            last.update(done_reason="stop", prompt_eval_count=10, eval_count=max(1, len(text) // 4))
            if body.get("stream", True) is False:
                last["message"]["content"] = text  # type: ignore[index]
                self._send(200, json.dumps(last).encode(), "application/json")
                return
            pieces = [text[i : i + 8] for i in range(0, len(text), 8)]
            lines = [
                {"model": body.get("model"), "message": {"role": "assistant", "content": p}, "done": False}
                for p in pieces
            ]
            payload = "".join(json.dumps(line) + "\n" for line in [*lines, last]).encode()
            self._send(200, payload, "application/x-ndjson")

        def _send(self, status: int, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
