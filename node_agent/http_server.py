"""A waitress server on a background thread, stoppable from another thread.

The Node Manager runs the Worker API this way so its own thread stays free
for the start-up sequence, the capability reports and signal handling.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer

from cynode_core.http_limits import answer_in_problems, server_options

log = logging.getLogger(__name__)

WsgiApp = Callable[..., Any]

# The Worker API takes bodies of 10 MiB at most (the node's settings and
# config can only lower that); an orchestrator served here takes the same.
DEFAULT_MAX_BODY = 10 * 1024 * 1024


class BackgroundServer:
    """Serve ``app`` with waitress on ``host:port`` in a daemon thread.

    The socket is bound in the constructor, so a port in use fails there
    (``OSError``), before anything is reported as started. ``port`` 0 picks
    a free port; ``port`` tells which. waitress stops reading a body over
    ``max_body`` bytes and lets ``app`` answer it (cynode_core.http_limits).
    """

    def __init__(
        self,
        app: WsgiApp,
        *,
        host: str,
        port: int,
        threads: int,
        name: str = "worker-api",
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self._map: dict[int, Any] = {}
        self.app = app
        self._server = waitress.create_server(
            app,
            map=self._map,
            host=host,
            port=port,
            threads=threads,
            ident="cynode",
            asyncore_use_poll=True,
            # waitress keeps reading a connection while its request runs, so it sees the client
            # close it and a handler can ask (waitress.client_disconnected; inference_chat does).
            channel_request_lookahead=1,
            **server_options(max_body),
        )
        answer_in_problems(self._server, self._map)
        self._thread = threading.Thread(target=self._server.run, name=name, daemon=True)
        self._name = name

    def _address(self) -> tuple[str, int]:
        """The bound host and port (waitress names them differently for one and for several sockets)."""
        server: Any = self._server
        if hasattr(server, "effective_port"):
            return str(server.effective_host), int(server.effective_port)
        host, port = server.effective_listen[0][:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self._address()[1]

    @property
    def host(self) -> str:
        return self._address()[0]

    def start(self) -> None:
        """Start serving in the background."""
        self._thread.start()
        log.info("%s listening on %s:%d", self._name, self.host, self.port)

    def _busy(self) -> bool:
        return any(
            isinstance(ch, HTTPChannel) and (ch.requests or ch.total_outbufs_len) for ch in list(self._map.values())
        )

    def stop(self, *, drain_timeout: float = 5.0) -> None:
        """Let answers in progress go out (up to ``drain_timeout``), then close every socket."""
        if not self._thread.is_alive():
            return
        deadline = time.monotonic() + drain_timeout
        while self._busy() and time.monotonic() < deadline:
            time.sleep(0.05)
        trigger = next((d.trigger for d in list(self._map.values()) if isinstance(d, BaseWSGIServer)), None)
        if trigger is not None:
            # Closing sockets from this thread would race the event loop's
            # poll(); the trigger runs the close inside the loop thread. The
            # loop may run the thunk before pull_trigger's own write returns,
            # so the trigger's pipe stays open until the loop has ended.
            trigger.pull_trigger(lambda: self._close_in_loop(trigger))
        self._thread.join(timeout=5.0)
        if trigger is not None and not self._thread.is_alive():
            trigger.close()
        self._server.task_dispatcher.shutdown(timeout=5.0)
        log.info("%s stopped", self._name)

    def _close_in_loop(self, trigger: Any) -> None:
        """Empty the event loop's map (so the loop ends), leaving the trigger's pipe open."""
        for obj in list(self._map.values()):
            try:
                if obj is trigger:
                    obj.del_channel()
                elif isinstance(obj, BaseWSGIServer):
                    # BaseWSGIServer.close() would also close the trigger.
                    wasyncore.dispatcher.close(obj)
                else:
                    obj.close()
            except OSError:
                pass  # already gone
