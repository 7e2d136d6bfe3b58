"""The Worker API's inference pass-through: ``POST /v1/worker/inference:chat``.

The orchestrator reaches a node's model only through the Worker API, as it
reaches its sandboxes (docs/wire_contract.md#worker-inference-chat). The
body is an Ollama ``POST /api/chat`` body; the node forwards it, every key
as it came, to its own inference backend's ``/api/chat`` and relays the
answer unchanged: the backend's status and ``Content-Type``, and each chunk
as soon as it arrives, so the orchestrator reads the NDJSON stream (or the
one JSON object) as if it had called the backend itself.

This module holds what the route does after the Worker API's bearer and body
checks (``worker_api`` registers it): the body's shape, the backend call and
the relay. The node's own refusals and failures are problem+json: 404 when
it has no backend, 503 when ``MAX_CALLS`` calls already run, 502 when the
backend cannot be reached, 504 when it has not answered within
``CYNODE_NODE_INFERENCE_TIMEOUT_SECONDS``. Once the backend's status is
relayed, a failure can only end the answer: an NDJSON stream ends with
Ollama's own mid-stream error line, ``{"error": "..."}``; any other answer is
cut off (the connection closes before its end).

A watcher thread per call shuts the backend connection down as soon as the
orchestrator's connection is gone (waitress's ``client_disconnected``) or the
call's time is up, even while the backend is silent; the backend then stops
at its next token. Each call is logged (model, status, outcome, duration,
bytes; never the messages) and counted (``node_agent.metrics``).
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Response

from cynode_core.contract.errors import InvalidInput, NotFound, Unavailable
from cynode_core.http_problems import problem_response
from cynode_core.logs import current_request_id, log_context
from node_agent.metrics import NodeMetrics

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 300
# Calls served at once; more answer 503. Each holds a Worker API thread for its
# whole answer, so the node manager gives its server this many threads more.
MAX_CALLS = 4
# Connecting to the backend (a loopback port, normally) takes at most this long.
CONNECT_TIMEOUT = 10.0
# How often a call's watcher looks at the client's connection and the clock.
WATCH_INTERVAL = 0.2
READ_CHUNK = 64 * 1024
NDJSON = "application/x-ndjson"

NO_BACKEND = "no inference backend"
BUSY = "Too many inference calls on this node"
UNREACHABLE = "inference backend unreachable"
TIMED_OUT = "inference backend timed out"
BROKEN = "inference backend answer broken off"
# The status a call is logged and counted with when its client left before any
# answer was sent (nginx's "client closed request"; nothing reaches anyone).
CLIENT_CLOSED = 499

# How a call ended (the ``outcome`` of its log line and metric).
COMPLETED = "completed"  # the backend's answer was relayed whole, whatever its status
REFUSED = "refused"  # the node answered itself: no backend, or too many calls
CANCELED = "canceled"  # the client left; the backend connection was closed
TIMEOUT = "timeout"  # the node's time was up: 504, or the answer ended early
FAILED = "failed"  # the backend could not be reached (502) or broke off its answer
# How much of a model name a log line repeats.
_SHOWN_CHARS = 200


@dataclass(frozen=True)
class ChatRequest:
    """A body the node forwards: its model and stream flag (for the log) and its bytes."""

    model: str
    stream: bool
    body: bytes

    @classmethod
    def from_json(cls, value: Any) -> ChatRequest:
        """Check the few keys the node relies on; every key goes to the backend as it came."""
        if not isinstance(value, dict):
            raise InvalidInput("request body must be a JSON object")
        model = value.get("model")
        if not isinstance(model, str) or not model.strip():
            raise InvalidInput("model must be a non-empty string")
        if not isinstance(value.get("messages"), list):
            raise InvalidInput("messages must be a list")
        # decode_json_body refused what JSON cannot carry, so this cannot fail.
        body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return cls(model, value.get("stream") is not False, body)  # Ollama streams unless told false


class InferenceChat:
    """``inference:chat`` of one node: :meth:`answer` is the route's whole work after auth and body reading.

    ``backend_url`` tells the backend's base URL at call time (``None``: the
    node has none, or not yet).
    """

    def __init__(
        self,
        backend_url: Callable[[], str | None],
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        metrics: NodeMetrics | None = None,
        max_calls: int = MAX_CALLS,
    ) -> None:
        self._backend_url = backend_url
        self.timeout = timeout
        self.metrics = metrics
        self._slots = threading.BoundedSemaphore(max_calls)

    def answer(self, body: Any, client_gone: Callable[[], bool]) -> Response:
        """Forward ``body`` and return the relaying response; a problem (raised or returned) otherwise."""
        request = ChatRequest.from_json(body)
        record = _CallRecord(request, self.metrics)
        base_url = self._backend_url()
        if base_url is None:
            record.end(404, REFUSED)
            raise NotFound(NO_BACKEND)
        call = BackendCall(base_url, self.timeout, client_gone)  # starts nothing yet
        if not self._slots.acquire(blocking=False):
            record.end(503, REFUSED)
            raise Unavailable(BUSY, retry_after=1)
        try:
            upstream = call.open(request.body)
        except (OSError, http.client.HTTPException) as exc:
            call.close()
            self._slots.release()
            return record.refused_by_backend(call.ended, exc)
        except BaseException:
            call.close()
            self._slots.release()
            raise

        def finish(outcome: str, sent: int) -> None:
            self._slots.release()
            record.end(upstream.status, outcome, sent)

        relay = Relay(call, upstream, finish)
        response = Response(relay, status=upstream.status, direct_passthrough=True)
        content_type = upstream.getheader("Content-Type")
        if content_type is None:
            del response.headers["Content-Type"]
        else:
            response.headers["Content-Type"] = content_type
        length = upstream.getheader("Content-Length")
        if not upstream.chunked and length is not None:
            response.headers["Content-Length"] = length
        return response


class _CallRecord:
    """What one call's log line and metrics say, once it has ended."""

    def __init__(self, request: ChatRequest, metrics: NodeMetrics | None) -> None:
        self.request = request
        self.metrics = metrics
        self.started = time.monotonic()
        # The answer may end after the request's context (and its bound id) is gone.
        self.request_id = current_request_id()

    def refused_by_backend(self, ended: str | None, exc: BaseException) -> Response:
        """The answer when no status came from the backend: 504, 502, or 499 for a client that left."""
        if ended == CANCELED:
            self.end(CLIENT_CLOSED, CANCELED)
            return problem_response(CLIENT_CLOSED, "the client closed its connection")
        if ended == TIMEOUT or isinstance(exc, TimeoutError):
            self.end(504, TIMEOUT)
            return problem_response(504, TIMED_OUT)
        log.warning("inference:chat: backend unreachable: %s", exc)
        self.end(502, FAILED)
        return problem_response(502, UNREACHABLE)

    def end(self, status: int, outcome: str, sent: int = 0) -> None:
        seconds = time.monotonic() - self.started
        if self.metrics is not None:
            self.metrics.inference_chat(status, outcome, seconds)
        model = self.request.model[:_SHOWN_CHARS]
        with log_context(request_id=self.request_id):
            log.info(
                "inference:chat model %r%s -> %d %s in %.3f s, %d bytes",
                model,
                " (stream)" if self.request.stream else "",
                status,
                outcome,
                seconds,
                sent,
                extra={
                    "model": model,
                    "stream": self.request.stream,
                    "status": status,
                    "outcome": outcome,
                    "duration_ms": round(seconds * 1000, 3),
                    "bytes": sent,
                },
            )


class BackendCall:
    """One request to the backend's ``/api/chat``, cut by its watcher when the client leaves or time is up."""

    def __init__(self, base_url: str, timeout: float, client_gone: Callable[[], bool]) -> None:
        parts = urlsplit(base_url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self._path = parts.path.rstrip("/") + "/api/chat"
        self._conn = kind(parts.hostname or "", parts.port, timeout=min(CONNECT_TIMEOUT, timeout))
        self._client_gone = client_gone
        self._lock = threading.Lock()
        self._done = threading.Event()
        # CANCELED or TIMEOUT once the watcher has cut the call.
        self.ended: str | None = None
        self._watcher = threading.Thread(target=self._watch, name="inference-chat-watch", daemon=True)

    def open(self, body: bytes) -> http.client.HTTPResponse:
        """Send ``body`` and wait for the backend's status and headers (``OSError`` or ``HTTPException`` if not)."""
        self._watcher.start()
        self._conn.connect()
        assert self._conn.sock is not None
        self._conn.sock.settimeout(self.timeout)  # the watcher keeps the deadline; this is a backstop
        if self.ended is not None:  # cut while connecting, when there was no socket to shut
            self._shut()
        self._conn.request("POST", self._path, body=body, headers={"Content-Type": "application/json"})
        return self._conn.getresponse()

    def _watch(self) -> None:
        while not self._done.wait(WATCH_INTERVAL):
            if self._client_gone():
                self.cut(CANCELED)
                return
            if time.monotonic() >= self.deadline:
                self.cut(TIMEOUT)
                return

    def cut(self, reason: str) -> None:
        """End the call now: a read or write on the backend connection fails or finds its end at once."""
        with self._lock:
            if self.ended is not None or self._done.is_set():
                return
            self.ended = reason
        self._shut()

    def _shut(self) -> None:
        with self._lock:
            sock = self._conn.sock
            if sock is None or self._done.is_set():
                return
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # not connected (any more)

    def close(self) -> None:
        """Close the backend connection (the backend sees it go) and stop the watcher. Idempotent."""
        with self._lock:
            self._done.set()
            self._conn.close()


class Relay:
    """The backend's answer as a WSGI body, chunk by chunk as it arrives; :meth:`close` ends the call.

    The server calls ``close`` whatever happened: after the last chunk, or
    when it stopped writing because the client left. ``finish`` gets the
    call's outcome and the bytes relayed, once.
    """

    def __init__(
        self, call: BackendCall, response: http.client.HTTPResponse, finish: Callable[[str, int], None]
    ) -> None:
        self._call = call
        self._response = response
        self._finish: Callable[[str, int], None] | None = finish
        content_type = (response.getheader("Content-Type") or "").split(";", 1)[0].strip().lower()
        self._ndjson = content_type == NDJSON
        # Whether the body's end is marked (chunked or Content-Length), so that a cut shows as a failure.
        self._framed = response.chunked or response.length is not None
        self._outcome: str | None = None
        self.sent = 0
        self._chunks = self._relay()

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def _relay(self) -> Generator[bytes, None, None]:
        failure: BaseException | None = None
        last = b"\n"
        try:
            while data := self._response.read1(READ_CHUNK):  # what has arrived, without waiting for more
                self.sent += len(data)
                last = data[-1:]
                yield data
            if self._response.length:  # a Content-Length body that ended early
                failure = http.client.IncompleteRead(b"", self._response.length)
        except (OSError, http.client.HTTPException) as exc:
            failure = exc
        ended = self._call.ended
        if failure is None and (self._framed or ended is None):  # whole, even if the watcher cut it just after
            self._outcome = COMPLETED
            return
        self._outcome = ended or (TIMEOUT if isinstance(failure, TimeoutError) else FAILED)
        if self._outcome == CANCELED:
            return  # nobody is listening
        reason = TIMED_OUT if self._outcome == TIMEOUT else BROKEN
        log.warning("inference:chat: %s after %d bytes%s", reason, self.sent, f": {failure}" if failure else "")
        if not self._ndjson:
            raise AnswerBrokenOff(reason)  # the server closes the connection before the answer's end
        # Ollama's way of failing a stream that has begun: a last line with "error".
        yield (b"" if last == b"\n" else b"\n") + json.dumps({"error": reason}).encode() + b"\n"

    def close(self) -> None:
        finish, self._finish = self._finish, None
        if finish is None:
            return
        try:
            self._chunks.close()
        finally:
            self._call.close()
            # Closed before its end: the server stopped writing, because the client left.
            finish(self._outcome or CANCELED, self.sent)


class AnswerBrokenOff(Exception):
    """A relayed answer that is not NDJSON could not be finished; the server cuts the connection."""
