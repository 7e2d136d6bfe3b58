"""A small Chrome DevTools Protocol client: headless Debian Chromium on loopback.

Chromium is started with ``--remote-debugging-port=0`` bound to 127.0.0.1 and
a fresh profile; the port it picked is read from ``DevToolsActivePort`` in
the profile. One page target is driven over its WebSocket (the
``websocket-client`` package) with synchronous calls: each :meth:`Page.call`
sends one command and reads messages until its answer, keeping the events
that arrive meanwhile. Host resolution maps every name except loopback to
nothing, so the page can reach 127.0.0.1 and nothing else.

Clicks and typing go through ``Input.*`` (real mouse and keyboard events at
the element's position), not through ``element.click()``, so a hidden or
covered element fails the way it would for a person.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
import websocket

CHROMIUM = "chromium"
HEADLESS_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    # Every name but loopback resolves to nothing: the page cannot leave the machine.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--window-size=1280,1600",
]


class CdpError(RuntimeError):
    """Chromium did not start, a command failed, or a wait ran out."""


class Page:
    """One page target: commands, events, and the few actions a UI test needs."""

    def __init__(self, ws_url: str, timeout: float = 30.0):
        self._ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        self.timeout = timeout

    def close(self) -> None:
        self._ws.close()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its ``result`` (raise on a protocol error)."""
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = json.loads(self._ws.recv())
            if message.get("id") == msg_id:
                if "error" in message:
                    raise CdpError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)
        raise CdpError(f"{method}: no answer within {self.timeout} s")

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CdpError(f"evaluate {expression!r}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        """Load ``url`` and wait for its ``load`` event."""
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", what=f"load of {url}")

    def wait_for(self, expression: str, *, what: str, timeout: float | None = None) -> Any:
        """Poll ``expression`` until it is truthy; return its value."""
        deadline = time.monotonic() + (timeout or self.timeout)
        last: Any = None
        while time.monotonic() < deadline:
            last = self.evaluate(expression)
            if last:
                return last
            time.sleep(0.1)
        raise CdpError(f"timed out waiting for {what} (last value {last!r})")

    def wait_selector(self, selector: str, *, timeout: float | None = None) -> None:
        """Wait until an element matching ``selector`` exists and is laid out (visible)."""
        sel = json.dumps(selector)
        self.wait_for(
            f"(() => {{ const e = document.querySelector({sel}); return !!e && e.getClientRects().length > 0; }})()",
            what=f"selector {selector}",
            timeout=timeout,
        )

    def text(self, selector: str) -> str:
        """``innerText`` of the first element matching ``selector`` ('' when none)."""
        sel = json.dumps(selector)
        return self.evaluate(f"(document.querySelector({sel}) || {{innerText: ''}}).innerText") or ""

    def click(self, selector: str) -> None:
        """Scroll the element into view and click its centre with the mouse."""
        self.wait_selector(selector)
        sel = json.dumps(selector)
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({sel}); e.scrollIntoView({{block: 'center'}});"
            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = box
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            extra = {} if kind == "mouseMoved" else {"button": "left", "clickCount": 1}
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, **extra)

    def type_into(self, selector: str, text: str) -> None:
        """Click a field and type ``text`` into it as keyboard input."""
        self.click(selector)
        self.call("Input.insertText", text=text)

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the whole page (beyond the viewport) at ``path``."""
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def requested_urls(self) -> list[str]:
        """URLs of every request the page made so far (needs ``Network.enable``)."""
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def exceptions(self) -> list[str]:
        """Uncaught JavaScript exceptions seen so far (needs ``Runtime.enable``)."""
        details = [e["params"]["exceptionDetails"] for e in self.events if e["method"] == "Runtime.exceptionThrown"]
        return [f"{d.get('text', '')} {d.get('exception', {}).get('description', '')}".strip() for d in details]


class Chromium:
    """A headless Chromium process with a throw-away profile; :meth:`page` opens its first tab."""

    def __init__(self, executable: str | None = None, start_timeout: float = 30.0):
        found = executable or shutil.which(CHROMIUM)
        if found is None:
            raise CdpError("chromium is not installed: run ./scripts/bootstrap (it installs Debian's chromium)")
        self.executable = found
        self.start_timeout = start_timeout
        self.profile = Path(tempfile.mkdtemp(prefix="cynode-chromium-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    def start(self) -> Chromium:
        self.log = open(self.profile / "chromium.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [self.executable, *HEADLESS_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CdpError(f"chromium exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            lines = port_file.read_text().split() if port_file.exists() else []
            if lines:
                self.port = int(lines[0])
                return self
            time.sleep(0.05)
        raise CdpError(f"chromium wrote no DevToolsActivePort within {self.start_timeout} s")

    def page(self) -> Page:
        """Connect to the first page target."""
        assert self.port is not None, "start() first"
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            targets = requests.get(f"http://127.0.0.1:{self.port}/json/list", timeout=5).json()
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return Page(pages[0]["webSocketDebuggerUrl"])
            time.sleep(0.1)
        raise CdpError("chromium shows no page target")

    def log_text(self) -> str:
        try:
            return (self.profile / "chromium.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # Its own session: the group holds the renderer and zygote children too.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if getattr(self, "log", None) is not None:
            self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)
