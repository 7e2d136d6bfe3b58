"""The part of Ollama's HTTP API a node uses, served on loopback in front of a :class:`LlamaEngine`.

Endpoints: ``GET /``, ``GET /api/version``, ``GET /api/tags``,
``POST /api/generate``, ``POST /api/chat``. Field names, defaults and status
codes follow Ollama's published API (``docs/api.md`` in ollama/ollama and
docs.ollama.com/api); the bodies are :mod:`cynode_llamacpp.ollama_bodies`'s,
this module serves them. ``stream`` defaults to true and streams NDJSON
(``application/x-ndjson``, one object per line, the last with ``done: true``
and the counts); ``stream: false`` answers one JSON object; errors are
``{"error": "..."}`` with Ollama's codes (400 bad request, 404 unknown model,
413 body too large, 503 queue full). ``format`` and ``tools`` constrain
the generation with a grammar (see :mod:`cynode_llamacpp.ollama_bodies`).
The server is a small
``ThreadingHTTPServer`` (HTTP/1.1, keep-alive, chunked streaming); the
engine's lock makes generations run one at a time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cynode_core.http_chunked import BadChunkedBody, ChunkedBodyTooLarge, read_chunked
from cynode_llamacpp import __version__
from cynode_llamacpp.engine import EngineBusy, EngineClosed, GenerationResult, LlamaEngine, Session
from cynode_llamacpp.grammars import GrammarError
from cynode_llamacpp.ollama_bodies import ApiError, ChatAnswer, ChatRequest, GenerateAnswer, GenerateRequest
from cynode_llamacpp.prompts import Prompt, PromptError, chat_prompt, generate_prompt
from cynode_llamacpp.served_model import ServedModel

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
JSON = "application/json; charset=utf-8"
DEFAULT_MAX_BODY = 16 * 1024 * 1024

Answer = GenerateAnswer | ChatAnswer


class OllamaApiServer:
    """The HTTP server; :meth:`start` binds and serves in a background thread."""

    def __init__(
        self,
        engine: LlamaEngine,
        model: ServedModel,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default_num_predict: int = 256,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.engine = engine
        self.model = model
        self.default_num_predict = default_num_predict
        self.max_body = max_body
        self._host, self._port = host, port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return f"http://{self._host}:{self._httpd.server_address[1]}"

    def start(self) -> None:
        self._httpd = _Server((self._host, self._port), _Handler, api=self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="cynode-llamacpp-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *, api: OllamaApiServer
    ) -> None:
        self.api = api
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            (self._connections.add if open_ else self._connections.discard)(connection)

    def close_connections(self) -> None:
        """End idle keep-alive connections so their threads do not outlive the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"cynode-llamacpp/{__version__}"
    timeout = 120  # idle keep-alive connections close after this
    server: _Server

    # ------------------------------------------------------------ plumbing

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, open_=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), format % args)

    @property
    def api(self) -> OllamaApiServer:
        return self.server.api

    def do_HEAD(self) -> None:
        if self.path == "/":
            self._send(200, b"", "text/plain; charset=utf-8")
        else:
            self._send(404, b"", "text/plain; charset=utf-8")

    def do_GET(self) -> None:
        routes: dict[str, Callable[[], None]] = {
            "/": self._root,
            "/api/version": self._version,
            "/api/tags": self._tags,
        }
        self._dispatch(routes.get(self._route()))

    def do_POST(self) -> None:
        routes: dict[str, Callable[[], None]] = {"/api/generate": self._generate, "/api/chat": self._chat}
        self._dispatch(routes.get(self._route()))

    def _route(self) -> str:
        return self.path.split("?", 1)[0]

    def _dispatch(self, handler: Callable[[], None] | None) -> None:
        self._started = time.perf_counter_ns()
        if handler is None:
            self._drain_body()
            self._send(404, b"404 page not found", "text/plain")  # what Ollama's router answers
            return
        try:
            handler()
        except ApiError as exc:
            self._send_json(exc.status, {"error": exc.message})
        except EngineBusy as exc:
            self._send_json(503, {"error": str(exc)})
        except EngineClosed as exc:
            self._send_json(503, {"error": str(exc)})
        except RuntimeError as exc:  # llama.cpp failed to decode: Ollama answers 500 with the reason
            log.warning("generation failed: %s", exc)
            self._send_json(500, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, _json_bytes(payload), JSON)

    def _drain_body(self) -> None:
        try:
            self._read_body()
        except ApiError:
            self.close_connection = True

    def _read_body(self) -> bytes:
        limit = self.api.max_body
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            try:
                return read_chunked(self.rfile, limit)
            except ChunkedBodyTooLarge:
                self.close_connection = True
                raise ApiError(413, "request body too large") from None
            except BadChunkedBody as exc:
                self.close_connection = True
                raise ApiError(400, str(exc)) from None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise ApiError(400, "invalid Content-Length") from None
        if length > limit:
            # Read (and drop) a moderately oversize body so the client, still
            # sending, sees the 413 instead of a broken pipe; then hang up.
            self.close_connection = True
            if length <= 4 * limit:
                while length > 0:
                    length -= len(self.rfile.read(min(length, 1024 * 1024))) or length
            raise ApiError(413, "request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _json_body(self) -> dict[str, Any]:
        body = self._read_body()
        if not body.strip():
            raise ApiError(400, "missing request body")
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"invalid JSON in request body: {exc}") from None
        except RecursionError:
            raise ApiError(400, "invalid JSON in request body: nested too deeply") from None
        if not isinstance(data, dict):
            raise ApiError(400, f"request body must be a JSON object, not {type(data).__name__}")
        return data

    # ------------------------------------------------------------ simple endpoints

    def _root(self) -> None:
        self._send(200, b"Ollama is running", "text/plain; charset=utf-8")

    def _version(self) -> None:
        self._send_json(200, {"version": __version__})

    def _tags(self) -> None:
        self._send_json(200, {"models": [self.api.model.tag()]})

    # ------------------------------------------------------------ generation

    def _generate(self) -> None:
        request = GenerateRequest.from_json(self._json_body(), self.api.model, self.api.default_num_predict)
        if not request.prompt and not request.context:
            self._send_json(200, request.load_answer())
            return
        with self.api.engine.session() as session:
            try:
                built = generate_prompt(
                    session,
                    self.api.model.info,
                    prompt=request.prompt or "",
                    system=request.system,
                    raw=request.raw,
                    context=request.context,
                )
            except PromptError as exc:
                raise ApiError(400, str(exc)) from None
            result = GenerationResult()
            answer = GenerateAnswer(request.model, result, self._started, with_context=not request.raw)
            self._answer(session, built, request, answer)

    def _chat(self) -> None:
        request = ChatRequest.from_json(self._json_body(), self.api.model, self.api.default_num_predict)
        if not request.messages:
            self._send_json(200, request.load_answer())
            return
        with self.api.engine.session() as session:
            try:
                built = chat_prompt(session, self.api.model.info, request.messages, request.tools)
            except PromptError as exc:
                raise ApiError(400, str(exc)) from None
            result = GenerationResult()
            answer = ChatAnswer(request.model, result, self._started, request.call_reader())
            self._answer(session, built, request, answer)

    def _answer(self, session: Session, built: Prompt, request: GenerateRequest | ChatRequest, answer: Answer) -> None:
        """Generate from ``built`` into ``answer.result`` and send the answer, streamed or whole."""
        sampling = dataclasses.replace(request.sampling, stop=(*request.sampling.stop, *built.stop))
        try:
            grammar = session.grammar(request.grammar) if request.grammar is not None else None
        except GrammarError as exc:
            raise ApiError(400, str(exc)) from None
        pieces = session.generate(built.tokens, sampling, answer.result, grammar)
        if built.strip_leading_space:
            pieces = _lstrip_pieces(pieces)
        pieces = answer.read(pieces)
        try:
            if not request.stream:
                text = "".join(pieces)
                self._send_json(200, answer.final(text))
                return
            self._stream(pieces, answer)
        finally:
            pieces.close()  # type: ignore[attr-defined]

    def _stream(self, pieces: Iterator[str], answer: Answer) -> None:
        chunked = self.request_version != "HTTP/1.0"
        self.send_response(200)
        self.send_header("Content-Type", NDJSON)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.close_connection = True
        self.end_headers()

        def write(payload: dict[str, Any]) -> None:
            line = _json_bytes(payload) + b"\n"
            self.wfile.write(b"%X\r\n%s\r\n" % (len(line), line) if chunked else line)
            self.wfile.flush()

        try:
            for text in pieces:
                write(answer.chunk(text))
            calls = answer.calls_chunk()
            if calls is not None:
                write(calls)
            write(answer.final(""))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client left: generation stops with the iterator
            return
        except (EngineClosed, RuntimeError) as exc:  # mid-stream, Ollama sends the error as the last line
            write({"error": str(exc)})
        if chunked:
            try:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the client left after the last line: nothing lost
                self.close_connection = True


def _json_bytes(payload: dict[str, Any]) -> bytes:
    """UTF-8 JSON; a lone surrogate echoed from a request (an error naming it) is written as its ``\\ud800`` escape."""
    return json.dumps(payload, ensure_ascii=False).encode("utf-8", "backslashreplace")


def _lstrip_pieces(pieces: Iterator[str]) -> Iterator[str]:
    leading = True
    try:
        for text in pieces:
            if leading:
                text = text.lstrip()
                if not text:
                    continue
                leading = False
            yield text
    finally:
        pieces.close()  # type: ignore[attr-defined]
