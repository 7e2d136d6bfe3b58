"""A FAKE inference backend: a standard-library HTTP server that speaks Ollama's API with canned text.

Why a fake: the contract-only install (``tox -e contract``) has the plugin
contract and nothing else, so neither a real Ollama server nor the embedded
llama.cpp backend (llama-cpp-python and a GGUF model) is there. This server
proves the inference contract kit itself, in that install, against a backend
whose every answer is known. It generates no text from a model: every
answer is the same sentence, cut to ``options.num_predict`` pieces.

The API it follows is Ollama's published REST API (``docs/api.md`` in
ollama/ollama, docs.ollama.com/api), for the endpoints a node's jobs use:

- ``GET /`` answers ``Ollama is running``; ``GET /api/version`` ``{"version"}``;
  ``GET /api/tags`` ``{"models": [{"name", "model", "modified_at", "size",
  "digest", "details"}]}``.
- ``POST /api/generate`` and ``POST /api/chat``: ``stream`` defaults to true
  and streams NDJSON (``application/x-ndjson``, chunked, one object per line,
  ``done: false`` then a last line with ``done: true``, ``done_reason`` and
  the counts and durations in nanoseconds); ``stream: false`` answers one
  JSON object. No prompt (or no messages) only "loads" the model:
  ``done_reason: "load"``. Model names compare as Ollama compares them
  (case-insensitive, ``:latest`` implied).
- Errors are ``{"error": "..."}``: 400 for a bad request, 404 for a model
  the server does not have; other paths get ``404 page not found`` as text.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cynode_core.contract import InferenceUnavailable, normalize_model_name

ANSWER = "This is a canned answer from a fake Ollama server."
NDJSON = "application/x-ndjson"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BadRequest(Exception):
    """An error answered as Ollama answers it: ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class _Server(ThreadingHTTPServer):
    """The fake on an ephemeral loopback port, serving from its own daemon thread as soon as it is built."""

    daemon_threads = True

    def __init__(self, models: Sequence[str]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.models = list(models)
        self.thread = threading.Thread(target=self._serve, name="fake-ollama", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with self:  # the listening socket closes once shutdown() ends the loop
            self.serve_forever()

    def stop(self) -> None:
        self.shutdown()
        self.thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:
        if self.path == "/":
            self._send(200, b"Ollama is running", "text/plain; charset=utf-8")
        elif self.path == "/api/version":
            self._send_json(200, {"version": "0.12.6"})
        elif self.path == "/api/tags":
            self._send_json(200, {"models": [self._tag(name) for name in self.server.models]})
        else:
            self._send(404, b"404 page not found", "text/plain")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path not in ("/api/generate", "/api/chat"):
            self._send(404, b"404 page not found", "text/plain")
            return
        try:
            self._generate(body, chat=self.path == "/api/chat")
        except BadRequest as exc:
            self._send_json(exc.status, {"error": str(exc)})

    def _tag(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "modified_at": "2025-01-01T00:00:00Z",
            "size": 1024,
            "digest": hashlib.sha256(name.encode()).hexdigest(),
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": "fake",
                "families": ["fake"],
                "parameter_size": "1B",
                "quantization_level": "Q4_0",
            },
        }

    def _generate(self, raw: bytes, *, chat: bool) -> None:
        started = time.perf_counter_ns()
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            raise BadRequest(400, "invalid JSON body") from None
        if not isinstance(request, dict):
            raise BadRequest(400, "the body must be a JSON object")
        model = request.get("model")
        if not isinstance(model, str) or not model.strip():
            raise BadRequest(400, "model is required")
        if normalize_model_name(model) not in {normalize_model_name(name) for name in self.server.models}:
            raise BadRequest(404, f'model "{model}" not found, try pulling it first')
        stream = request.get("stream", True)
        if not isinstance(stream, bool):
            raise BadRequest(400, "stream must be a boolean")
        asked = self._messages(request) if chat else request.get("prompt") or ""
        if not isinstance(asked, str):
            raise BadRequest(400, "prompt must be a string")
        options = request.get("options") or {}
        limit = options.get("num_predict", -1) if isinstance(options, dict) else -1
        every = ANSWER.replace(" ", "\0 ").split("\0")  # word pieces, as a tokenizer streams them
        pieces = every[:limit] if isinstance(limit, int) and limit >= 0 else every
        reason = "stop" if len(pieces) == len(every) else "length"
        if not asked:
            pieces, reason = [], "load"

        def line(text: str, done: bool) -> dict[str, Any]:
            payload: dict[str, Any] = {"model": model, "created_at": _now()}
            payload |= {"message": {"role": "assistant", "content": text}} if chat else {"response": text}
            if not done:
                return payload | {"done": False}
            elapsed = max(time.perf_counter_ns() - started, 1)
            counts = {
                "total_duration": elapsed,
                "load_duration": 0,
                "prompt_eval_count": len(asked.split()),
                "prompt_eval_duration": elapsed // 2,
                "eval_count": len(pieces),
                "eval_duration": elapsed // 2,
            }
            return payload | {"done": True, "done_reason": reason} | (counts if asked else {})

        if not stream:
            self._send_json(200, line("".join(pieces), done=True))
            return
        self._head(200, {"Content-Type": NDJSON, "Transfer-Encoding": "chunked"})
        for payload in [*(line(piece, done=False) for piece in pieces), line("", done=True)]:
            data = json.dumps(payload).encode() + b"\n"
            self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    @staticmethod
    def _messages(request: dict[str, Any]) -> str:
        """The text of the chat's messages, each checked as Ollama checks it."""
        messages = request.get("messages") or []
        if not isinstance(messages, list):
            raise BadRequest(400, "messages must be a list")
        for message in messages:
            if not (isinstance(message, dict) and isinstance(message.get("content", ""), str)):
                raise BadRequest(400, "each message must be an object with a string content")
            if message.get("role") not in ("system", "user", "assistant", "tool"):
                raise BadRequest(400, f"invalid role {message.get('role')!r}")
        return " ".join(message.get("content", "") for message in messages)

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self._head(status, {"Content-Type": content_type, "Content-Length": str(len(body))})
        self.wfile.write(body)

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json; charset=utf-8")


class FakeOllamaBackend:
    """An :class:`~cynode_core.contract.InferenceBackend` that starts the fake server on an ephemeral loopback port."""

    name = "fake-ollama"

    def __init__(self, models: Sequence[str] = ("fake-echo:1b",)) -> None:
        self._models = list(models)
        self._server: _Server | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` once started; empty before."""
        return f"http://127.0.0.1:{self._server.server_address[1]}" if self._server is not None else ""

    def start(self) -> None:
        if self._server is None:
            self._server = _Server(self._models)

    def models(self) -> list[str]:
        """The names ``GET /api/tags`` lists, as a real backend reads them."""
        if self._server is None:
            raise InferenceUnavailable("the fake Ollama server is not started")
        with _OPENER.open(self.base_url + "/api/tags", timeout=5) as response:
            return [str(entry["name"]) for entry in json.loads(response.read())["models"]]

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()
