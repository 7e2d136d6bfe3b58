"""HTTP helpers for the cynode-llamacpp tests (a module of its own so test files can import it)."""

from __future__ import annotations

import contextlib
import http.client
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MODEL = "gemma3:270m"


@dataclass
class Reply:
    """One HTTP answer, read completely."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def json(self) -> Any:
        return json.loads(self.body)

    def lines(self) -> list[dict[str, Any]]:
        """The NDJSON objects of a streamed answer, in order."""
        return [json.loads(line) for line in self.body.decode("utf-8").splitlines() if line.strip()]


Call = Callable[..., Reply]


def connect(base_url: str, timeout: float = 60) -> http.client.HTTPConnection:
    """An unopened connection to the server at ``base_url``."""
    parts = urlsplit(base_url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def http_call(
    base_url: str,
    method: str,
    path: str,
    body: object = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> Reply:
    """One request on a fresh connection; ``body`` is JSON-encoded unless it is bytes."""
    connection = connect(base_url, timeout)
    try:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        connection.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def generate(call: Call, prompt: str, *, model: str = MODEL, **fields: Any) -> Reply:
    """``POST /api/generate`` without streaming; ``fields`` (options, raw, context, ...) join the body."""
    return call("POST", "/api/generate", {"model": model, "prompt": prompt, "stream": False, **fields})


@contextlib.contextmanager
def long_stream(base_url: str, num_predict: int) -> Iterator[tuple[http.client.HTTPResponse, dict[str, Any]]]:
    """A streamed generate on a raw connection, with its first NDJSON object read; the connection closes on exit."""
    connection = connect(base_url, timeout=30)
    try:
        request = {"model": MODEL, "prompt": "Once upon a time", "options": {"num_predict": num_predict}}
        connection.request("POST", "/api/generate", body=json.dumps(request))
        response = connection.getresponse()
        yield response, json.loads(response.readline())
    finally:
        connection.close()
