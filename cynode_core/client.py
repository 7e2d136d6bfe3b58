"""A small HTTP client of the User API Gateway, with stored, auto-refreshed tokens.

Credentials live in ``$XDG_CONFIG_HOME/cynode/credentials.json`` (mode 0600).
A 401 on a call triggers one refresh with the stored refresh token, then
the call is retried once. :meth:`GatewayClient.follow_logs` reads a task's
server-sent events (docs/wire_contract.md#tasks-logs-follow) and resumes
after a dropped connection where it stopped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from cynode_core.private_files import write_private

DEFAULT_URL = "http://127.0.0.1:12080"
# Reconnections of a log follow in a row without an event in between before it gives up.
FOLLOW_RECONNECTS = 8
# A 503 with Retry-After up to BUSY_WAIT_MAX seconds is waited out and sent again, this many times.
BUSY_RETRIES = 5
BUSY_WAIT_MAX = 30.0


def _busy_wait(resp: requests.Response) -> float | None:
    """Seconds to wait before sending again, when ``resp`` is a 503 that says when to retry (soon)."""
    if resp.status_code != 503:
        return None
    try:
        wait = float(resp.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return wait if 0 <= wait <= BUSY_WAIT_MAX else None


def _replayable(kwargs: dict[str, Any]) -> bool:
    """Whether the request's body can be sent again (a file or stream being read cannot)."""
    data = kwargs.get("data")
    return "files" not in kwargs and (data is None or isinstance(data, (bytes, str, dict)))


def credentials_path() -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "cynode" / "credentials.json"


class ApiError(Exception):
    """An error answer of the gateway, shown as ``<status> <title>: <detail>``."""

    def __init__(self, status: int, title: str, detail: str):
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")
        self.status = status
        self.detail = detail


@dataclass
class Credentials:
    url: str
    access_token: str
    refresh_token: str

    def save(self, path: Path | None = None) -> None:
        write_private(path or credentials_path(), json.dumps(self.__dict__))

    @classmethod
    def load(cls, path: Path | None = None) -> Credentials | None:
        try:
            data = json.loads((path or credentials_path()).read_text())
            return cls(data["url"], data["access_token"], data["refresh_token"])
        except (OSError, ValueError, KeyError):
            return None


@dataclass(frozen=True)
class ServerEvent:
    """One server-sent event: its type, its data lines joined, and the stream's last id when it came."""

    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


def parse_events(chunks: Iterable[bytes]) -> Iterator[ServerEvent]:
    """The events of a ``text/event-stream`` body arriving in ``chunks`` (comments and ``retry`` skipped)."""
    pending = b""
    name, last_id = "", None
    data: list[str] = []
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
            if not line:
                if data:
                    yield ServerEvent(name or "message", "\n".join(data), last_id)
                name, data = "", []
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "id" and "\0" not in value:
                last_id = value


class GatewayClient:
    def __init__(
        self, url: str, credentials: Credentials | None = None, *, timeout: float = 30.0, store: Path | None = None
    ):
        self.url = url.rstrip("/")
        self.credentials = credentials
        self.timeout = timeout
        self.store = store
        self.http = requests.Session()

    @classmethod
    def from_store(cls, url: str | None = None, store: Path | None = None) -> GatewayClient:
        creds = Credentials.load(store)
        return cls(
            url or (creds.url if creds else None) or os.environ.get("CYNODE_URL") or DEFAULT_URL, creds, store=store
        )

    def _raw(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if auth:
            if self.credentials is None:
                raise ApiError(401, "Unauthorized", "not logged in; run `cynode login`")
            headers["Authorization"] = f"Bearer {self.credentials.access_token}"
        try:
            timeout = kwargs.pop("timeout", self.timeout)
            return self.http.request(method, f"{self.url}{path}", headers=headers, timeout=timeout, **kwargs)
        except requests.ConnectionError as exc:
            raise ApiError(0, "Unreachable", f"cannot reach {self.url} ({type(exc).__name__})") from exc

    def request(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> requests.Response:
        """The gateway's raw answer, after one refresh and retry when a stored access token got 401.

        A 503 with a short ``Retry-After`` (a busy login queue, a database
        failover) is waited out and sent again, up to :data:`BUSY_RETRIES`
        times, when the body can be sent twice (not a stream being uploaded).
        """
        resp = self._raw(method, path, auth=auth, **kwargs)
        if resp.status_code == 401 and auth and self.credentials is not None and self._refresh():
            resp = self._raw(method, path, auth=auth, **kwargs)
        for _ in range(BUSY_RETRIES if _replayable(kwargs) else 0):
            wait = _busy_wait(resp)
            if wait is None:
                break
            resp.close()
            time.sleep(wait)
            resp = self._raw(method, path, auth=auth, **kwargs)
        return resp

    def call(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> Any:
        """The decoded JSON body of a successful answer; ``ApiError`` for an error answer."""
        return self._decode(self.request(method, path, auth=auth, **kwargs))

    def follow_logs(self, ref: str, *, stream: str = "all", last_event_id: str | None = None) -> Iterator[ServerEvent]:
        """A task's events as they come, until its ``end`` event (docs/wire_contract.md#tasks-logs-follow).

        A connection that drops (or goes quiet past ``timeout``) is opened
        again with ``Last-Event-ID``, so no line is lost or repeated; after
        :data:`FOLLOW_RECONNECTS` failures in a row, ``ApiError``. An error
        answer (404, 503 ...) is raised as ``ApiError`` at once.
        """
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_event_id:
                headers["Last-Event-ID"] = last_event_id
            try:
                resp = self.request(
                    "GET",
                    f"/v1/tasks/{ref}/logs",
                    params={"follow": "true", "stream": stream},
                    headers=headers,
                    stream=True,
                )
                with resp:
                    if resp.status_code != 200:
                        self._decode(resp)
                        raise ApiError(resp.status_code, resp.reason or "Error", "not an event stream")
                    for event in parse_events(resp.iter_content(chunk_size=None)):
                        failures = 0
                        last_event_id = event.id or last_event_id
                        yield event
                        if event.event == "end":
                            return
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                error: Exception = exc
            except ApiError as exc:
                if exc.status != 0:
                    raise
                error = exc
            else:
                error = ApiError(0, "Stream ended", "the event stream closed before its end event")
            failures += 1
            if failures > FOLLOW_RECONNECTS:
                raise ApiError(0, "Unreachable", f"following {ref} failed {failures} times ({error})") from error
            time.sleep(min(0.25 * 2**failures, 5.0))

    @staticmethod
    def _decode(resp: requests.Response) -> Any:
        if resp.status_code == 204:
            return None
        if resp.status_code >= 400:
            try:
                body = resp.json()
                raise ApiError(resp.status_code, body.get("title", resp.reason), body.get("detail", ""))
            except ValueError:
                raise ApiError(resp.status_code, resp.reason or "Error", resp.text.strip()[:200]) from None
        return resp.json() if resp.content else None

    def _refresh(self) -> bool:
        assert self.credentials is not None
        resp = self._raw("POST", "/v1/auth/refresh", auth=False, json={"refresh_token": self.credentials.refresh_token})
        if resp.status_code != 200:
            return False
        self._keep(resp.json())
        return True

    def login(self, handle: str, password: str) -> Credentials:
        return self._keep(
            self.call("POST", "/v1/auth/login", auth=False, json={"handle": handle, "password": password})
        )

    def _keep(self, tokens: dict[str, Any]) -> Credentials:
        """Hold the token pair of a login or refresh answer and save it to the credentials file."""
        self.credentials = Credentials(self.url, tokens["access_token"], tokens["refresh_token"])
        self.credentials.save(self.store)
        return self.credentials

    def create_api_key(self, name: str, expires_in_days: int | None = None) -> dict[str, Any]:
        """A new personal API key (docs/wire_contract.md#api-keys): the answer holds the key, shown this once."""
        body: dict[str, Any] = {"name": name}
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        return dict(self.call("POST", "/v1/auth/api-keys", json=body))

    def list_api_keys(self) -> list[dict[str, Any]]:
        """The caller's API keys, newest first (never the keys themselves)."""
        return list(self.call("GET", "/v1/auth/api-keys")["data"])

    def revoke_api_key(self, key_id: str) -> None:
        self.call("DELETE", f"/v1/auth/api-keys/{quote(key_id, safe='')}")

    def logout(self) -> None:
        if self.credentials is not None:
            try:
                self.call("POST", "/v1/auth/logout", json={"refresh_token": self.credentials.refresh_token})
            finally:
                path = self.store or credentials_path()
                path.unlink(missing_ok=True)
                self.credentials = None
