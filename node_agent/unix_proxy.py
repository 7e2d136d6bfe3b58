"""A per-job proxy on a Unix socket: its socket and directory, its server thread, the connections it cuts.

A job's sandbox keeps ``--network none``; what it may reach of the node, it
reaches through a Unix socket in a per-job directory,
``<state_dir>/proxy/<job_id>/``, bind-mounted read-only at ``/run/cynode``.
Each proxy of the job has one socket there (mode 0666, so the sandbox's
unprivileged user can connect): ``inference_proxy`` (the node's model) and
``mcp_proxy`` (the control plane's MCP gateway). This module holds what they
share: the proxy's life (:class:`UnixProxy`), the server (a thread per
connection, bounded) and the connections it tracks and cuts when the job
ends. ``proxy_handler`` holds what a proxy does with each request.

Standard library only: ``socketserver`` + ``http.server`` on a thread per
connection, ``http.client`` upstream.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

from node_agent.metrics import NodeMetrics
from node_agent.proxy_handler import ProxyHandler

log = logging.getLogger(__name__)

# Where the socket directory appears inside the sandbox.
SANDBOX_SOCKET_DIR = "/run/cynode"

MAX_BODY_BYTES = 10 * 1024 * 1024
REQUEST_TIMEOUT = 120.0
READY_TIMEOUT = 10.0
# One sandbox gets this many connections at once; more wait in the listen queue.
MAX_CONNECTIONS = 32
# AF_UNIX paths are limited to 108 bytes; longer ones are reached through /proc.
_SUN_PATH_MAX = 100


class ProxyError(Exception):
    """The proxy could not start or does not answer its health check."""


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
    """``http.client`` over a Unix socket (the node's health checks; tests use it too)."""

    def __init__(self, socket_path: Path, timeout: float = REQUEST_TIMEOUT) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = Path(socket_path)

    def connect(self) -> None:
        self.sock = connect_unix(self.socket_path, self.timeout)


class UnixProxy:
    """A per-job proxy's life: ``start()``, ``wait_ready()``, hand the socket directory to the sandbox, ``close()``.

    Subclasses say what the proxy forwards (``proxy_handler.ProxyView``):
    ``socket_name``, ``kind``, ``endpoints``, ``prepare``, ``upstream``.
    Several proxies of one job share its socket directory, one socket each;
    the last one closed removes the directory.
    """

    socket_name = "proxy.sock"
    # The variable that tells the sandbox where the socket is, and its value.
    sandbox_env = "PROXY_URL"
    kind = "job"
    upstream_name = "upstream"
    upstream_url = ""
    metrics: NodeMetrics | None = None

    def __init__(
        self,
        socket_dir: Path,
        *,
        name: str = "",
        max_body_bytes: int = MAX_BODY_BYTES,
        request_timeout: float = REQUEST_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.socket_dir = Path(socket_dir)
        self.name = name or self.socket_dir.name
        self.max_body_bytes = max_body_bytes
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self._server: ProxyServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def socket_path(self) -> Path:
        return self.socket_dir / self.socket_name

    @property
    def sandbox_url(self) -> str:
        """The socket as the sandbox reaches it: ``http+unix://`` and its path with every "/" as %2F."""
        return "http+unix://" + quote(f"{SANDBOX_SOCKET_DIR}/{self.socket_name}", safe="")

    def start(self) -> None:
        """Create the socket directory (if need be) and the socket, and serve on a background thread."""
        # The parent is 0700 so no other host user reaches the socket; the
        # sandbox sees only this directory, mounted at /run/cynode.
        self.socket_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.socket_dir.mkdir(mode=0o755, exist_ok=True)
        self.socket_dir.chmod(0o755)  # whatever the umask
        self.socket_path.unlink(missing_ok=True)  # left by a crash
        try:
            self._server = ProxyServer(self)
            self.socket_path.chmod(0o666)  # the sandbox's user is not ours
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._server.serve, name=f"{self.kind}-proxy-{self.name}", daemon=True)
        self._thread.start()
        log.info("job %s: %s proxy on %s -> %s", self.name, self.kind, self.socket_path, self.upstream_url)

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
        """Stop serving, cut open connections, remove the socket (and the directory once empty). Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.stop_accepting()
            if self._thread is not None:
                self._thread.join(timeout=5.0)
            server.server_close()
            server.abort_connections()
        self._thread = None
        self.socket_path.unlink(missing_ok=True)
        try:
            self.socket_dir.rmdir()
        except OSError:
            pass  # another proxy of the job still has its socket here, or it is gone already

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ProxyServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A thread per connection, at most ``max_connections`` at once.

    Past that, ``serve`` stops accepting until a connection ends: further
    clients wait in the kernel's listen queue instead of being refused, so a
    job's burst of requests is slowed down, never failed, and costs no thread.
    """

    daemon_threads = True
    request_queue_size = MAX_CONNECTIONS

    def __init__(self, proxy: UnixProxy) -> None:
        self.proxy = proxy
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._upstreams: set[socket.socket] = set()
        self._stopping = False
        self._aborted = False
        self._slots = threading.Semaphore(proxy.max_connections)
        super().__init__(str(proxy.socket_path), ProxyHandler)

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
                log.warning("job %s: %s proxy accept failed: %s", self.proxy.name, self.proxy.kind, exc)
                time.sleep(0.1)  # e.g. out of file descriptors: do not spin
                continue
            with self._lock:
                self._connections.add(request)
            try:
                self.process_request(request, client_address)  # a thread per connection
            except Exception:  # noqa: BLE001 - e.g. no thread could be started; keep serving
                log.exception("job %s: %s proxy could not serve a connection", self.proxy.name, self.proxy.kind)
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
            log.debug("job %s: %s proxy connection ended early", self.proxy.name, self.proxy.kind, exc_info=True)
        else:
            log.exception("job %s: %s proxy request failed", self.proxy.name, self.proxy.kind)

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
        """Cut every open connection, to the sandbox and upstream (the job ended).

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
