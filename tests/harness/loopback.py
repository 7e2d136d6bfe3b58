"""What a test listens with on 127.0.0.1: a peer it plays over HTTP, a listener that counts connections,
a proxy that cuts connections.

A peer's answers come from a :class:`PeerHandler` subclass; :func:`serving`
runs it in a daemon thread for the length of a ``with`` block.
:class:`RecordingListener` accepts bare TCP connections, so a test can prove
that nothing connected to an address. :class:`CuttingProxy` passes TCP to a
port and can reset its clients' connections, as a network that loses a node
would.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class PeerHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing and sends each answer whole, with its length."""

    def answer(self, status: int, body: bytes, content_type: str) -> None:
        """The status line, ``Content-Type`` and ``Content-Length``, then ``body``."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on ``127.0.0.1`` in a daemon thread; yields ``http://127.0.0.1:<port>``, shuts down on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name=f"peer-{handler.__name__}", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class RecordingListener:
    """A TCP listener on 127.0.0.1 (``port`` 0: any free one) that accepts, counts and closes connections."""

    def __init__(self, port: int = 0) -> None:
        self.connections = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(16)
        self._sock.settimeout(0.1)  # how soon the accepting thread sees close()
        self.port = int(self._sock.getsockname()[1])
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="recording-listener", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:  # the timeout above, or a connection that went away before it was accepted
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._closing.set()
        self._thread.join(5)
        self._sock.close()


# SO_LINGER on, 0 s: close() sends a TCP reset instead of a FIN.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


def reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset (the peer reads ``ECONNRESET``).

    The read side is shut first: a thread blocked reading the socket would
    otherwise keep it open past ``close()``, and the reset would never go out.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        sock.shutdown(socket.SHUT_RD)
    sock.close()


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target_port``: bytes pass unchanged, until the test cuts.

    :meth:`hold_requests` marks the next connections whose request starts
    with a given prefix: the request still reaches the target, but its
    answer is kept from the client, and :meth:`reset_held` resets those
    clients while the target goes on (a node that keeps running a job whose
    caller lost the connection). :meth:`partition` resets every new
    connection at once until :meth:`heal`.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(32)
        self._sock.settimeout(0.1)
        self.port = int(self._sock.getsockname()[1])
        self._lock = threading.Lock()
        self._hold_prefix = b""
        self._hold_count = 0
        self._held: list[socket.socket] = []
        self._partitioned = False
        self.reset_connections = 0  # connections refused by a partition
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="cutting-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold_requests(self, prefix: bytes, count: int = 1) -> None:
        """Withhold the answers of the next ``count`` connections whose data starts with ``prefix``."""
        with self._lock:
            self._hold_prefix, self._hold_count = prefix, count

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def reset_held(self) -> int:
        """Reset every held client connection (the target's side stays open); how many there were."""
        with self._lock:
            held, self._held = self._held, []
        for client in held:
            reset(client)
        return len(held)

    def partition(self) -> None:
        with self._lock:
            self._partitioned = True

    def heal(self) -> None:
        with self._lock:
            self._partitioned = False

    def close(self) -> None:
        self._closing.set()
        self._thread.join(5)
        self._sock.close()
        self.reset_held()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                continue
            with self._lock:
                partitioned = self._partitioned
                if partitioned:
                    self.reset_connections += 1
            if partitioned:
                reset(client)
                continue
            threading.Thread(target=self._serve, args=(client,), name="cutting-proxy-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            reset(client)
            return
        upstream.settimeout(None)
        held = threading.Event()
        back = threading.Thread(target=self._answers, args=(upstream, client, held), daemon=True)
        back.start()
        try:
            while data := client.recv(65536):
                self._maybe_hold(client, data, held)
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            if not held.is_set():  # a held request's target keeps its connection until it answers
                with contextlib.suppress(OSError):
                    upstream.shutdown(socket.SHUT_WR)
                back.join(10)
                client.close()

    def _maybe_hold(self, client: socket.socket, data: bytes, held: threading.Event) -> None:
        with self._lock:
            if held.is_set() or not self._hold_count or not data.startswith(self._hold_prefix):
                return
            self._hold_count -= 1
            self._held.append(client)
            held.set()

    @staticmethod
    def _answers(upstream: socket.socket, client: socket.socket, held: threading.Event) -> None:
        """The target's bytes to the client, except once the connection is held: then they are dropped."""
        try:
            while data := upstream.recv(65536):
                if not held.is_set():
                    client.sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()
            if not held.is_set():
                with contextlib.suppress(OSError):
                    client.shutdown(socket.SHUT_WR)
