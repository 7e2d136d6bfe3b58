"""How a per-job proxy answers one HTTP request from a sandbox: the inference proxy and the MCP proxy.

Both proxies (``inference_proxy``, docs/wire_contract.md#inference-proxy;
``mcp_proxy``, mcp_contract.md 2.3) share this handler; what differs is in
the proxy object it reads (:class:`ProxyView`).

The request side: the body is read within its limit (10 MiB by default;
over it, 413 plain ``request body too large`` and nothing goes upstream),
the path must be one of the proxy's ``endpoints`` with its method, and only
a few harmless headers are passed on, plus what the proxy adds itself (the
MCP proxy's job token; the inference proxy adds nothing). The proxy may
rewrite the body first (``prepare``: the inference proxy pins a model
request to the node's policy, ``inference_policy``); a refusal there is
answered in Ollama's own error shape, ``{"error": ...}``. The response
side: the upstream answer is relayed as it arrives, chunk by chunk, so
NDJSON streaming works, within the request's deadline. The proxy's other
answers are ``text/plain``. The server and its socket are ``unix_proxy``'s.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from cynode_core.contract.errors import InvalidInput, NotPermitted
from cynode_core.http_chunked import BadChunkedBody, ChunkedBodyTooLarge, read_chunked
from node_agent.metrics import LastLine, NodeMetrics

log = logging.getLogger(__name__)

# After a 413 the rest of an oversized body is read and dropped (up to this
# much) so that clients which send the whole body before reading, such as
# Python's http.client, see the 413 instead of a broken pipe.
DRAIN_LIMIT = 64 * 1024 * 1024
READ_CHUNK = 64 * 1024

# Request headers passed on upstream; everything else (Authorization,
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


class _BodyTooLarge(Exception):
    """The request body is over the limit."""


class _BadBody(Exception):
    """The request body's framing is broken (its length, or its chunks)."""


class ProxyView(Protocol):
    """What a handler reads of its proxy (``inference_proxy.InferenceProxy``, ``mcp_proxy.McpProxy``)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str:
        """What the proxy is for, in its messages: ``inference``, ``MCP``."""
        ...

    @property
    def upstream_url(self) -> str: ...
    @property
    def upstream_name(self) -> str:
        """What is upstream, in messages: ``inference backend``, ``control plane``."""
        ...

    @property
    def endpoints(self) -> Mapping[str, str]:
        """The paths a sandbox may use, each with its one method."""
        ...

    @property
    def max_body_bytes(self) -> int: ...
    @property
    def request_timeout(self) -> float: ...
    @property
    def metrics(self) -> NodeMetrics | None:
        """Inference metrics, or None (the MCP proxy counts nothing here)."""
        ...

    def prepare(self, path: str, body: bytes) -> bytes:
        """The body to send upstream; ``InvalidInput`` or ``NotPermitted`` to refuse it."""
        ...

    def upstream(self, timeout: float) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
        """A connection upstream (not yet connected), the path prefix, and the headers the proxy adds."""
        ...


class ServerView(Protocol):
    """What a handler uses of its server (``unix_proxy.ProxyServer``), which this module does not import."""

    @property
    def proxy(self) -> ProxyView: ...
    def track_upstream(self, sock: socket.socket | None) -> None: ...
    def untrack_upstream(self, sock: socket.socket | None) -> None: ...


class ProxyHandler(BaseHTTPRequestHandler):
    """One connection from the sandbox; each request is checked, then forwarded or refused."""

    protocol_version = "HTTP/1.1"
    server_version = "cynode-job-proxy"
    sys_version = ""

    @property
    def proxy_server(self) -> ServerView:
        return cast(ServerView, self.server)

    def setup(self) -> None:
        super().setup()
        # Idle keep-alive connections and stalled senders are cut after the request timeout.
        self.connection.settimeout(self.proxy_server.proxy.request_timeout)

    # -- routing ------------------------------------------------------------

    def _handle(self) -> None:
        self._status = 0
        started = time.monotonic()
        try:
            self._route()
        finally:
            metrics = self.proxy_server.proxy.metrics
            path = urlsplit(self.path).path
            if metrics is not None and path != "/healthz":  # the node's own readiness checks are no inference
                endpoint = path if path in self.proxy_server.proxy.endpoints else "other"
                metrics.inference_request(endpoint, self._status, time.monotonic() - started)

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = code
        super().send_response(code, message)

    def _route(self) -> None:
        proxy = self.proxy_server.proxy
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
        allowed = proxy.endpoints.get(path)
        if allowed is None:
            log.info("job %s: %s proxy refused %s %s", proxy.name, proxy.kind, self.command, path[:200])
            self._reply(403, f"forbidden: not an allowed {proxy.kind} endpoint")
            return
        if self.command != allowed:
            self._reply(405, "method not allowed", {"Allow": allowed})
            return
        try:
            body = proxy.prepare(path, body)
        except (InvalidInput, NotPermitted) as exc:
            log.info("job %s: %s proxy refused a %s body: %s", proxy.name, proxy.kind, path, exc.detail)
            # Ollama's error shape, so a job's Ollama client reads it like the backend's own.
            error = json.dumps({"error": exc.detail}).encode()
            self._send(403 if isinstance(exc, NotPermitted) else 400, error, "application/json; charset=utf-8")
            return
        self._forward(path, body, deadline)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    def handle_expect_100(self) -> bool:
        # Refuse an announced oversized body before the client sends it.
        length = self.headers.get("Content-Length", "")
        if length.strip().isdigit() and int(length) > self.proxy_server.proxy.max_body_bytes:
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
        """A chunked body of at most ``limit`` bytes (cynode_core.http_chunked: strict syntax, bounded)."""
        try:
            return read_chunked(self.rfile, limit, DRAIN_LIMIT)
        except ChunkedBodyTooLarge:
            raise _BodyTooLarge() from None
        except BadChunkedBody as exc:
            raise _BadBody(str(exc)) from None

    def _too_large(self, *, drain: bool = True) -> None:
        log.info(
            "job %s: %s proxy refused an oversized body (%s bytes)",
            self.proxy_server.proxy.name,
            self.proxy_server.proxy.kind,
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
        proxy = self.proxy_server.proxy
        upstream, prefix, added = proxy.upstream(max(deadline - time.monotonic(), 0.001))
        headers = {name: self.headers[name] for name in FORWARDED_REQUEST_HEADERS if self.headers[name]}
        headers.update(added)
        if self.command == "POST" or body:
            headers["Content-Length"] = str(len(body))
        try:
            try:
                upstream.connect()
                self.proxy_server.track_upstream(upstream.sock)
                upstream.request(self.command, prefix + path, body=body or None, headers=headers)
                response = upstream.getresponse()
            except TimeoutError:
                self._reply(504, f"{proxy.upstream_name} timed out")
                return
            except (OSError, http.client.HTTPException) as exc:
                log.warning("job %s: %s %s unreachable: %s", proxy.name, proxy.upstream_name, proxy.upstream_url, exc)
                self._reply(502, f"{proxy.upstream_name} unavailable")
                return
            self._relay(response, upstream, deadline)
        finally:
            self.proxy_server.untrack_upstream(upstream.sock)
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
        metrics = self.proxy_server.proxy.metrics
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
                "job %s: %s proxy cut a response: %s",
                self.proxy_server.proxy.name,
                self.proxy_server.proxy.kind,
                "timed out" if isinstance(exc, TimeoutError) else exc,
            )
            self.close_connection = True

    # -- replies and logging --------------------------------------------------

    def _reply(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8", headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
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
        proxy = self.proxy_server.proxy
        log.debug("job %s: %s proxy: " + format, proxy.name, proxy.kind, *args)
