"""What a test listens with on 127.0.0.1: a peer it plays over HTTP, a listener that counts connections.

A peer's answers come from a :class:`PeerHandler` subclass; :func:`serving`
runs it in a daemon thread for the length of a ``with`` block.
:class:`RecordingListener` accepts bare TCP connections, so a test can prove
that nothing connected to an address.
"""

from __future__ import annotations

import contextlib
import socket
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
