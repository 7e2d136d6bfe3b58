"""Record HTTP exchanges as normalised, comparable records (no cynode imports here).

A record is the request as sent and the response as received, with only the
per-run values replaced by stable placeholders. Normalisation works on the
raw TEXT (regular expressions over the body string, never a parse and
re-dump), so key order, whitespace, escaping and the trailing newline stay
part of the record. Placeholders are numbered by first appearance within one
:class:`Recorder`, so "the id in this answer is the id in that path" is kept:

- JWTs -> ``<jwt:N>``; personal API keys and their 12-character prefixes
  (``cyk_...``) -> ``<api-key:N>``; UUIDs -> ``<uuid:N>``; ULIDs -> ``<ulid:N>``
- RFC 3339 times -> ``<time>`` (the contracts' form ``YYYY-MM-DDTHH:MM:SSZ``);
  any other time form keeps its shape, digits zeroed: ``<time:0000-00-00T00:00:00.000000+00:00>``
- in response bodies, the value (16+ characters) of any JSON key naming a
  token/secret/password/psk that is not already a placeholder -> ``<token:N>``,
  and every later occurrence of that value (e.g. the Worker API bearer token)
- literal values given by the test (secrets, ephemeral ports) -> their labels
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Response headers whose values only say which server or which run answered.
DROPPED_HEADERS = {"date", "server", "content-length", "connection", "keep-alive"}
# Kept, but only as "present": the value is new on every request.
PRESENCE_HEADERS = {
    "x-request-id": "<request-id>",
    "etag": "<etag>",
    "last-modified": "<http-date>",
    "expires": "<http-date>",
}
# Request headers worth recording (the recorder sends no others unless asked).
REQUEST_HEADERS = ("Content-Type", "Authorization", "X-Forwarded-For")
# Bodies larger than this (or not UTF-8) are recorded as their size and digest.
MAX_TEXT_BODY = 64 * 1024

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_API_KEY = re.compile(r"\bcyk_[A-Za-z0-9_-]{8,}")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_ULID = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{26}\b")
_TIME = re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
_CANONICAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
# A JSON member whose key names a secret (not "token_type") and whose value is long enough to be one.
_SECRET_KEY = re.compile(
    r'"(?!\w*_type")(\w*(?:token|secret|password|psk)\w*)"\s*:\s*"([^"\\<][^"\\]{15,})"', re.IGNORECASE
)


class Normaliser:
    """Replaces per-run values in texts; one instance per recorded surface (numbering is shared)."""

    def __init__(self, literals: Mapping[str, str] | None = None) -> None:
        self.literals: dict[str, str] = {k: v for k, v in (literals or {}).items() if k}
        self._numbers: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}

    def _number(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key not in self._numbers:
            self._counts[kind] = self._counts.get(kind, 0) + 1
            self._numbers[key] = f"<{kind}:{self._counts[kind]}>"
        return self._numbers[key]

    def text(self, text: str, *, learn: bool = False) -> str:
        """``text`` normalised; ``learn``: first take the values of secret-named keys as new tokens."""
        for match in _SECRET_KEY.finditer(text) if learn else ():
            value = match.group(2)
            if value not in self.literals and not _JWT.fullmatch(value):
                self.literals[value] = self._number("token", value)
        for value in sorted(self.literals, key=len, reverse=True):
            text = text.replace(value, self.literals[value])
        text = _JWT.sub(lambda m: self._number("jwt", m.group()), text)
        text = _API_KEY.sub(lambda m: self._number("api-key", m.group()), text)
        text = _UUID.sub(lambda m: self._number("uuid", m.group()), text)
        text = _ULID.sub(lambda m: self._number("ulid", m.group()), text)
        return _TIME.sub(_time, text)


def _time(match: re.Match[str]) -> str:
    value = match.group()
    return "<time>" if _CANONICAL_TIME.fullmatch(value) else "<time:" + re.sub(r"\d", "0", value) + ">"


def body_text(data: bytes) -> str:
    """The body as text, or its size and digest when it is large or not UTF-8."""
    if len(data) <= MAX_TEXT_BODY:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return f"<{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}>"


# -- transports ---------------------------------------------------------------------


@dataclass
class Raw:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


class WsgiTarget:
    """Calls a WSGI app (or a Flask/werkzeug test client) in this process."""

    def __init__(self, app_or_client: Any) -> None:
        from werkzeug.test import Client

        self.client = app_or_client if hasattr(app_or_client, "open") else Client(app_or_client)

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Raw:
        resp = self.client.open(path, method=method, data=body, headers=headers)
        try:
            return Raw(resp.status_code, resp.headers.to_wsgi_list(), resp.get_data())
        finally:
            resp.close()  # a file the app sends stays open until its response is closed


class HttpTarget:
    """Calls a server over HTTP at ``base_url``."""

    def __init__(self, base_url: str) -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Raw:
        resp = self.session.request(
            method, self.base_url + path, data=body, headers=headers, timeout=120, allow_redirects=False
        )
        return Raw(resp.status_code, list(resp.raw.headers.items()), resp.content)


def target_for(app_or_url: Any) -> WsgiTarget | HttpTarget:
    return HttpTarget(app_or_url) if isinstance(app_or_url, str) else WsgiTarget(app_or_url)


# -- the recorder ---------------------------------------------------------------------

_NO_BODY = object()


@dataclass
class Recorder:
    """Performs requests against one target and keeps the normalised record of each.

    ``literals`` maps known per-run values (secrets, ephemeral ``host:port``)
    to their placeholders. ``record=False`` performs a set-up call unrecorded.
    """

    target: WsgiTarget | HttpTarget
    literals: Mapping[str, str] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.norm = Normaliser(self.literals)

    def __call__(
        self,
        step: str,
        method: str,
        path: str,
        *,
        json_body: Any = _NO_BODY,
        data: bytes | str | None = None,
        content_type: str | None = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        record: bool = True,
        volatile: Iterable[str] = (),
        body_filter: Callable[[str], str] | None = None,
        replay: Raw | None = None,
    ) -> Raw:
        """One request. ``volatile`` names response headers recorded as ``<volatile>``;
        ``body_filter`` reduces a response body before it is recorded (e.g. metrics);
        ``replay`` records that answer instead of sending (see :meth:`background`)."""
        sent: dict[str, str] = dict(headers or {})
        if json_body is not _NO_BODY:
            data, content_type = json.dumps(json_body), content_type or "application/json"
        body = data.encode("utf-8") if isinstance(data, str) else data
        if content_type is not None:
            sent["Content-Type"] = content_type
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        raw = replay if replay is not None else self.target.send(method, path, body, sent)
        if record:
            self.records.append(
                self._record(step, method, path, sent, body, raw, {v.lower() for v in volatile}, body_filter)
            )
        return raw

    def background(self, step: str, method: str, path: str, **kwargs: Any) -> Callable[[], Raw]:
        """Start a request in a thread; calling the returned function waits for it and records it THEN,
        so the order of the records never depends on thread timing."""
        box: dict[str, Any] = {}

        def send() -> None:
            try:
                box["raw"] = self(step, method, path, record=False, **kwargs)
            except BaseException as exc:  # re-raised by finish()
                box["error"] = exc

        thread = threading.Thread(target=send, name=f"wire-{step}", daemon=True)
        thread.start()

        def finish() -> Raw:
            thread.join()
            if "error" in box:
                raise box["error"]
            return self(step, method, path, **kwargs, replay=box["raw"])

        return finish

    def _record(
        self,
        step: str,
        method: str,
        path: str,
        sent: dict[str, str],
        body: bytes | None,
        raw: Raw,
        volatile: set[str],
        body_filter: Callable[[str], str] | None,
    ) -> dict[str, Any]:
        n = self.norm.text
        request_headers = [[k, n(v)] for k, v in sent.items() if k in REQUEST_HEADERS]
        response_headers = []
        for name, value in raw.headers:
            lower = name.lower()
            if lower in DROPPED_HEADERS:
                continue
            if lower in volatile:
                value = "<volatile>"
            elif lower == "allow":
                # Werkzeug lists the methods in set order, which changes with the hash seed.
                value = ", ".join(sorted(value.split(", ")))
            response_headers.append([name, PRESENCE_HEADERS.get(lower) or n(value)])
        response_body = body_text(raw.body)
        if body_filter is not None:
            response_body = body_filter(response_body)
        return {
            "step": step,
            "request": {
                "method": method,
                "path": n(path),
                "headers": request_headers,
                "body": None if body is None else n(body_text(body)),
            },
            "response": {"status": raw.status, "headers": response_headers, "body": n(response_body, learn=True)},
        }


# -- rendering for diffs ---------------------------------------------------------------


def render(record: dict[str, Any]) -> list[str]:
    """A record as lines for a readable diff (the raw body line is kept; JSON is also shown indented)."""
    req, resp = record["request"], record["response"]
    lines = [f"## {record['step']}", f"> {req['method']} {req['path']}"]
    lines += [f"> {k}: {v}" for k, v in req["headers"]]
    if req["body"] is not None:
        lines += [f"> {line}" for line in req["body"].splitlines() or [""]]
    lines.append(f"< {resp['status']}")
    lines += [f"< {k}: {v}" for k, v in resp["headers"]]
    lines += [f"< {line!r}" for line in resp["body"].splitlines(keepends=True)]
    try:
        pretty = json.dumps(
            json.loads(resp["body"], object_pairs_hook=lambda pairs: dict(pairs)), indent=2, ensure_ascii=False
        )
    except ValueError:
        return lines
    return lines + ["< (indented:)"] + [f"<   {line}" for line in pretty.splitlines()]
