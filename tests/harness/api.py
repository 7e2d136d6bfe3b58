"""The tests' one HTTP client of the orchestrator: the product's ``GatewayClient``, answers left raw.

:class:`ApiClient` talks to a served orchestrator over loopback
(``ApiClient(url)``) or straight into a Flask app in this process
(``ApiClient.in_process(app)``, through a ``requests`` transport that hands
each request to the app's test client). Either way every answer is a
``requests.Response``, so the same assertions read both.

Two ways to authenticate, never mixed up:

- ``get`` / ``post`` / ``send`` add nothing but what they are given:
  ``token=`` becomes ``Authorization: Bearer <token>``; without it the call
  is anonymous, whoever logged in before;
- the product's own ``call`` (decoded JSON, ``ApiError`` on an error answer)
  and ``request`` use the access token of the last successful :meth:`login`.

The token pair of a login is kept in memory only, never in the user's
credentials file.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from cynode_core.client import ApiError, Credentials, GatewayClient

IN_PROCESS_URL = "http://in-process.invalid"
TERMINAL = ("completed", "failed", "canceled")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class _AppTransport(BaseAdapter):
    """A ``requests`` transport that answers from a WSGI app's test client instead of a socket."""

    def __init__(self, app: Any):
        super().__init__()
        self.client = app.test_client()

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        url = urlsplit(request.url or "")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        body = request.body.encode() if isinstance(request.body, str) else request.body
        answer = self.client.open(
            url.path, method=request.method, query_string=url.query, headers=headers, data=body or b""
        )
        try:
            content = answer.get_data()
        finally:
            answer.close()  # a file the app sends stays open until its response is closed
        resp = requests.Response()
        resp.status_code = answer.status_code
        resp.reason = answer.status.partition(" ")[2]
        resp.headers = CaseInsensitiveDict(answer.headers.items())
        resp._content = content
        resp._content_consumed = True
        resp.encoding = get_encoding_from_headers(resp.headers)
        resp.url = request.url or ""
        resp.request = request
        return resp

    def close(self) -> None:
        pass


class ApiClient(GatewayClient):
    """The gateway (and control plane) client of the tests; see the module's docstring."""

    def __init__(self, url: str, *, timeout: float = 10.0):
        super().__init__(url, timeout=timeout)

    @classmethod
    def in_process(cls, app: Any) -> ApiClient:
        """A client whose requests go straight to ``app`` in this process."""
        client = cls(IN_PROCESS_URL)
        client.http.mount(IN_PROCESS_URL, _AppTransport(app))
        return client

    def _keep(self, tokens: dict[str, Any]) -> Credentials:
        self.credentials = Credentials(self.url, tokens["access_token"], tokens["refresh_token"])
        return self.credentials

    # -- raw calls ------------------------------------------------------------------

    def send(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> requests.Response:
        """One call with only what it is given; ``token`` is sent as a bearer token."""
        if token is not None:
            kwargs["headers"] = {**kwargs.get("headers", {}), **bearer(token)}
        return self.request(method, path, auth=False, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.send("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.send("POST", path, **kwargs)

    # -- the one login ----------------------------------------------------------------

    def login(  # type: ignore[override]
        self, handle: str, password: str, *, ip: str | None = None, expect: int | None = None
    ) -> requests.Response:
        """``POST /v1/auth/login``, the answer whatever it is; a 200 also keeps the token pair.

        Unlike the product's ``login`` (which raises on a refusal) this returns
        the response, since the tests look at refusals too; ``expect`` asserts
        its status. ``ip`` is sent as ``X-Forwarded-For`` (the test
        orchestrator trusts it), for the per-address limits.
        """
        headers = {"X-Forwarded-For": ip} if ip else {}
        resp = self.post("/v1/auth/login", json={"handle": handle, "password": password}, headers=headers)
        assert expect is None or resp.status_code == expect, resp.text
        if resp.status_code == 200:
            self._keep(resp.json())
        return resp

    @property
    def token(self) -> str:
        """The access token of the last successful login."""
        assert self.credentials is not None, "not logged in"
        return self.credentials.access_token

    # -- tasks, as the logged-in user ----------------------------------------------------

    def post_command(self, command: str, *, request_id: str | None = None) -> requests.Response:
        """``POST /v1/tasks`` of a command task (with ``X-Request-Id`` when given); the raw answer."""
        headers = {"X-Request-Id": request_id} if request_id else {}
        return self.request("POST", "/v1/tasks", json={"prompt": command, "input_mode": "commands"}, headers=headers)

    def create_command(self, command: str) -> str:
        """A command task's id."""
        resp = self.post_command(command)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    def wait_result(self, task_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 60.0) -> dict[str, Any]:
        """``GET /v1/tasks/{id}/result`` until the task's status is one of ``statuses``."""
        deadline = time.monotonic() + timeout
        body: Any = None
        while time.monotonic() < deadline:
            try:
                resp = self.request("GET", f"/v1/tasks/{task_id}/result")
            except ApiError as exc:  # status 0: the server is not reachable (yet, or again)
                if exc.status != 0:
                    raise
                time.sleep(0.2)
                continue
            if resp.status_code == 200:
                body = resp.json()
                if body["status"] in statuses:
                    return dict(body)
            time.sleep(0.2)
        raise AssertionError(f"task {task_id} not in {statuses} within {timeout:.0f} s (last: {body!r})")
