"""The per-job inference proxy (node contract section 8): Ollama's API for one sandbox, on a Unix socket only.

A job with ``sandbox.use_inference`` gets its own proxy: a small HTTP/1.1
server on ``<state_dir>/proxy/<job_id>/inference-proxy.sock`` (mode 0666, so
the sandbox's unprivileged user can connect), the directory bind-mounted
read-only at ``/run/cynode`` in a container that keeps ``--network none``.
It forwards a fixed list of inference endpoints to the node's backend on
loopback and refuses everything else, so a job can ask the model questions
but cannot pull, push, create, copy or delete models.

Limits (contract section 8): request bodies up to 10 MiB (over: 413 plain
``request body too large``, and nothing reaches the backend), 120 s per
request, its own ``GET /healthz`` -> 200 ``ok``. No credentials are added;
only a few harmless request headers are passed on. Responses are relayed as
they arrive, chunk by chunk, so NDJSON streaming works through the proxy.

Standard library only: ``socketserver`` + ``http.server`` on a thread per
connection, ``http.client`` to the backend.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import os
import shutil
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from node_agent.metrics import LastLine, NodeMetrics

log = logging.getLogger(__name__)

SOCKET_NAME = "inference-proxy.sock"
# Where the socket directory appears inside the sandbox, and the URL jobs get.
SANDBOX_SOCKET_DIR = "/run/cynode"
SANDBOX_SOCKET_PATH = f"{SANDBOX_SOCKET_DIR}/{SOCKET_NAME}"
SANDBOX_PROXY_URL = "http+unix://" + quote(SANDBOX_SOCKET_PATH, safe="")  # every "/" as %2F, like Go's PathEscape

MAX_BODY_BYTES = 10 * 1024 * 1024
REQUEST_TIMEOUT = 120.0
READY_TIMEOUT = 10.0
# One sandbox gets this many connections at once; more wait in the listen queue.
MAX_CONNECTIONS = 32
# After a 413 the rest of an oversized body is read and dropped (up to this
# much) so that clients which send the whole body before reading, such as
# Python's http.client, see the 413 instead of a broken pipe.
DRAIN_LIMIT = 64 * 1024 * 1024
READ_CHUNK = 64 * 1024

# The endpoints a sandbox may use: asking the model, and reading what it is.
# Model management (pull, push, create, copy, delete, blobs) is refused.
ALLOWED_ENDPOINTS: dict[str, str] = {
    "/api/tags": "GET",
    "/api/version": "GET",
    "/api/show": "POST",
    "/api/generate": "POST",
    "/api/chat": "POST",
    "/api/embed": "POST",
    "/api/embeddings": "POST",
}
# Request headers passed on to the backend; everything else (Authorization,
# Cookie, proxy and hop-by-hop headers) stays in the sandbox.
FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept", "User-Agent")
# Response headers not relayed: hop-by-hop ones, and those this server writes itself.
_DROPPED_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "date",
        "server",
    }
)
# AF_UNIX paths are limited to 108 bytes; longer ones are reached through /proc.
_SUN_PATH_MAX = 100


class ProxyError(Exception):
    """The proxy could not start or does not answer its health check."""


class _BodyTooLarge(Exception):
    pass


class _BadBody(Exception):
    pass


def loopback_upstream(base_url: str) -> tuple[str, int, str]:
    """``(host, port, path prefix)`` of an ``http://`` URL on a loopback address; ``ProxyError`` otherwise.

    The proxy's traffic must never leave the node (contract section 8).
    """
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise ProxyError(f"inference backend URL {base_url!r}: {exc}") from None
    if parts.scheme != "http" or not host:
        raise ProxyError(f"inference backend URL {base_url!r} is not an http:// URL")
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ProxyError(f"inference backend URL {base_url!r} is not on a loopback address")
    return host, port, parts.path.rstrip("/")


@contextmanager
def _unix_address(path: Path) -> Iterator[str]:
    """An address for ``bind``/``connect`` to ``path``, however long ``path`` is."""
    if len(os.fsencode(str(path))) <= _SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def connect_unix(path: Path, timeout: float | None = None) -> socket.socket:
    """A stream socket connected to the Unix socket at ``path``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        with _unix_address(path) as address:
            sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


class UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client`` over a Unix socket (the node's health check; tests use it too)."""

    def __init__(self, socket_path: Path, timeout: float = REQUEST_TIMEOUT) -> None:
        super().__init__("inference", timeout=timeout)
        self.socket_path = Path(socket_path)

    def connect(self) -> None:
        self.sock = connect_unix(self.socket_path, self.timeout)


class InferenceProxy:
    """One job's proxy: ``start()``, ``wait_ready()``, hand the socket directory to the sandbox, ``close()``."""

    def __init__(
        self,
        socket_dir: Path,
        upstream_url: str,
        *,
        name: str = "",
        max_body_bytes: int = MAX_BODY_BYTES,
        request_timeout: float = REQUEST_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.socket_dir = Path(socket_dir)
        # Request counts, latency and backend-reported tokens go here (node_agent.metrics).
        self.metrics = metrics
        self.upstream_url = upstream_url
        self.name = name or self.socket_dir.name
        self.max_body_bytes = max_body_bytes
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self._upstream = loopback_upstream(upstream_url)
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def socket_path(self) -> Path:
        return self.socket_dir / SOCKET_NAME

    def start(self) -> None:
        """Create the socket directory and socket, and serve on a background thread."""
        # The parent is 0700 so no other host user reaches the socket; the
        # sandbox sees only this directory, mounted at /run/cynode.
        self.socket_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.socket_dir.exists():
            shutil.rmtree(self.socket_dir)  # left by a crash
        self.socket_dir.mkdir(mode=0o755)
        self.socket_dir.chmod(0o755)  # whatever the umask
        try:
            self._server = _ProxyServer(self)
            self.socket_path.chmod(0o666)  # the sandbox's user is not ours
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._server.serve, name=f"inference-proxy-{self.name}", daemon=True)
        self._thread.start()
        log.info("job %s: inference proxy on %s -> %s", self.name, self.socket_path, self.upstream_url)

    def wait_ready(self, timeout: float = READY_TIMEOUT, interval: float = 0.2) -> None:
        """Poll ``GET /healthz`` over the socket until it answers 200 ``ok``; ``ProxyError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            problem = self._health_problem(min(2.0, max(deadline - time.monotonic(), 0.1)))
            if problem is None:
                return
            if time.monotonic() + interval > deadline:
                raise ProxyError(f"no healthy answer on {self.socket_path} within {timeout:g} s: {problem}")
            time.sleep(interval)

    def _health_problem(self, timeout: float) -> str | None:
        conn = UnixHTTPConnection(self.socket_path, timeout=timeout)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            return str(exc) or type(exc).__name__
        finally:
            conn.close()
        if response.status == 200 and body == b"ok":
            return None
        return f"/healthz answered {response.status}"

    def close(self) -> None:
        """Stop serving, cut open connections, remove the socket and its directory. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.stop_accepting()
            if self._thread is not None:
                self._thread.join(timeout=5.0)
            server.server_close()
            server.abort_connections()
        self._thread = None
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self) -> InferenceProxy:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _ProxyServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A thread per connection, at most ``max_connections`` at once.

    Past that, ``serve`` stops accepting until a connection ends: further
    clients wait in the kernel's listen queue instead of being refused, so a
    job's burst of requests is slowed down, never failed, and costs no thread.
    """

    daemon_threads = True
    request_queue_size = MAX_CONNECTIONS

    def __init__(self, proxy: InferenceProxy) -> None:
        self.proxy = proxy
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._upstreams: set[socket.socket] = set()
        self._stopping = False
        self._aborted = False
        self._slots = threading.Semaphore(proxy.max_connections)
        super().__init__(str(proxy.socket_path), _ProxyHandler)

    def serve(self) -> None:
        """Accept connections until ``stop_accepting``.

        Used instead of ``serve_forever``, whose polling loop makes every
        close wait up to one poll interval.
        """
        while True:
            self._slots.acquire()
            if self._stopping:
                return
            try:
                request, client_address = self.get_request()
            except OSError as exc:
                self._slots.release()
                if self._stopping:
                    return
                log.warning("job %s: inference proxy accept failed: %s", self.proxy.name, exc)
                time.sleep(0.1)  # e.g. out of file descriptors: do not spin
                continue
            with self._lock:
                self._connections.add(request)
            try:
                self.process_request(request, client_address)  # a thread per connection
            except Exception:  # noqa: BLE001 - e.g. no thread could be started; keep serving
                log.exception("job %s: inference proxy could not serve a connection", self.proxy.name)
                self.shutdown_request(request)

    def stop_accepting(self) -> None:
        """End ``serve``: on Linux, shutting a listening socket down wakes a blocked ``accept`` at once."""
        self._stopping = True
        self._slots.release()  # in case serve waits for a free slot
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def server_bind(self) -> None:
        with _unix_address(Path(self.server_address)) as address:  # type: ignore[arg-type]
            self.socket.bind(address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A sandbox that hangs up mid-answer is normal; anything else is a bug worth a trace.
        if isinstance(sys.exc_info()[1], OSError):
            log.debug("job %s: inference proxy connection ended early", self.proxy.name, exc_info=True)
        else:
            log.exception("job %s: inference proxy request failed", self.proxy.name)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)
        self._slots.release()

    def track_upstream(self, sock: socket.socket | None) -> None:
        with self._lock:
            if sock is None:
                return
            self._upstreams.add(sock)
            aborted = self._aborted
        if aborted:  # the job ended while this request was on its way: send nothing
            sock.shutdown(socket.SHUT_RDWR)

    def untrack_upstream(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._upstreams.discard(sock)  # type: ignore[arg-type]

    def abort_connections(self) -> None:
        """Cut every open connection, to the sandbox and to the backend (the job ended).

        Handler threads blocked on either side then fail fast and end.
        """
        with self._lock:
            self._aborted = True
            connections = list(self._connections) + list(self._upstreams)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cynode-inference-proxy"
    sys_version = ""
    server: _ProxyServer

    def setup(self) -> None:
        super().setup()
        # Idle keep-alive connections and stalled senders are cut after the request timeout.
        self.connection.settimeout(self.server.proxy.request_timeout)

    # -- routing ------------------------------------------------------------

    def _handle(self) -> None:
        self._status = 0
        started = time.monotonic()
        try:
            self._route()
        finally:
            metrics = self.server.proxy.metrics
            path = urlsplit(self.path).path
            if metrics is not None and path != "/healthz":  # the node's own readiness checks are no inference
                endpoint = path if path in ALLOWED_ENDPOINTS else "other"
                metrics.inference_request(endpoint, self._status, time.monotonic() - started)

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = code
        super().send_response(code, message)

    def _route(self) -> None:
        proxy = self.server.proxy
        deadline = time.monotonic() + proxy.request_timeout
        path = urlsplit(self.path).path
        try:
            body = self._read_body(proxy.max_body_bytes)
        except _BodyTooLarge:
            self._too_large()
            return
        except _BadBody as exc:
            self.close_connection = True
            self._reply(400, str(exc))
            return
        if path == "/healthz" and self.command == "GET":
            self._reply(200, "ok")
            return
        allowed = ALLOWED_ENDPOINTS.get(path)
        if allowed is None:
            log.info("job %s: inference proxy refused %s %s", proxy.name, self.command, path[:200])
            self._reply(403, "forbidden: not an allowed inference endpoint")
            return
        if self.command != allowed:
            self._reply(405, "method not allowed", {"Allow": allowed})
            return
        self._forward(path, body, deadline)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    def handle_expect_100(self) -> bool:
        # Refuse an announced oversized body before the client sends it.
        length = self.headers.get("Content-Length", "")
        if length.strip().isdigit() and int(length) > self.server.proxy.max_body_bytes:
            self._too_large(drain=False)
            return False
        return super().handle_expect_100()

    # -- request body -------------------------------------------------------

    def _read_body(self, limit: int) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        if not raw.strip().isdigit():
            raise _BadBody("invalid Content-Length")
        length = int(raw)
        if length > limit:
            raise _BodyTooLarge()
        body = self.rfile.read(length)
        if len(body) != length:
            raise _BadBody("request body shorter than its Content-Length")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        """A chunked body of at most ``limit`` bytes.

        An oversized one is still read to its end (up to ``DRAIN_LIMIT``, not
        kept) so the client is not cut off mid-send before it sees the 413.
        """
        body = bytearray()
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadBody("invalid chunked request body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            total += size
            if total > DRAIN_LIMIT:
                raise _BodyTooLarge()
            while size > 0:
                data = self.rfile.read(min(size, READ_CHUNK))
                if not data:
                    raise _BadBody("truncated chunked request body")
                size -= len(data)
                if total <= limit:
                    body += data
            self.rfile.readline(3)
        if total > limit:
            raise _BodyTooLarge()
        return bytes(body)

    def _too_large(self, *, drain: bool = True) -> None:
        log.info(
            "job %s: inference proxy refused an oversized body (%s bytes)",
            self.server.proxy.name,
            self.headers.get("Content-Length", "chunked"),
        )
        self.close_connection = True
        self._reply(413, "request body too large")
        if not drain:
            return
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return  # _read_chunked read what there was to read
        try:
            length = self.headers.get("Content-Length", "")
            remaining = int(length) if length.strip().isdigit() and int(length) <= DRAIN_LIMIT else 0
            while remaining > 0:
                chunk = self.rfile.read(min(READ_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass  # the connection closes anyway

    # -- forwarding ---------------------------------------------------------

    def _forward(self, path: str, body: bytes, deadline: float) -> None:
        proxy = self.server.proxy
        host, port, prefix = proxy._upstream
        headers = {name: self.headers[name] for name in FORWARDED_REQUEST_HEADERS if self.headers[name]}
        if self.command == "POST" or body:
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(host, port, timeout=max(deadline - time.monotonic(), 0.001))
        try:
            try:
                upstream.connect()
                self.server.track_upstream(upstream.sock)
                upstream.request(self.command, prefix + path, body=body or None, headers=headers)
                response = upstream.getresponse()
            except TimeoutError:
                self._reply(504, "inference backend timed out")
                return
            except (OSError, http.client.HTTPException) as exc:
                log.warning("job %s: inference backend %s unreachable: %s", proxy.name, proxy.upstream_url, exc)
                self._reply(502, "inference backend unavailable")
                return
            self._relay(response, upstream, deadline)
        finally:
            self.server.untrack_upstream(upstream.sock)
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse, upstream: http.client.HTTPConnection, deadline: float) -> None:
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _DROPPED_RESPONSE_HEADERS:
                self.send_header(name, value)
        if response.status in (204, 304) or response.status < 200:
            self.end_headers()  # no body by definition
            return
        length = None if response.chunked else response.getheader("Content-Length")
        chunked = length is None
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", length)
        self.end_headers()
        metrics = self.server.proxy.metrics
        # The backend's final JSON (last NDJSON line or the one body) holds the token counts.
        tail = LastLine() if metrics is not None and response.status == 200 and self.command == "POST" else None
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                assert upstream.sock is not None
                upstream.sock.settimeout(remaining)
                data = response.read1(READ_CHUNK)  # what has arrived, without waiting for more
                if not data:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                if tail is not None:
                    tail.feed(data)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            if tail is not None and metrics is not None:
                metrics.inference_usage(tail.value)
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            # The status line is gone already: cutting the connection is the only signal left.
            log.warning(
                "job %s: inference proxy cut a response: %s",
                self.server.proxy.name,
                "timed out" if isinstance(exc, TimeoutError) else exc,
            )
            self.close_connection = True

    # -- replies and logging --------------------------------------------------

    def _reply(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own errors (bad request line, unsupported method) as plain text too.
        self.close_connection = True
        try:
            self._reply(code, message or self.responses.get(code, ("error",))[0])
        except OSError:
            pass

    def address_string(self) -> str:
        return "sandbox"  # a Unix socket peer has no address

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("job %s: inference proxy: " + format, self.server.proxy.name, *args)
