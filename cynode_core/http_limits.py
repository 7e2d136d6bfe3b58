"""What a client may send to a cynode HTTP surface, enforced where it enters.

Two gates, shared by the orchestrator and the node's Worker API:

- **Body size, at the server.** waitress reads a whole request body (into
  memory, then a temporary file) before it calls the app, up to its own cap
  of 1 GiB; Flask's ``MAX_CONTENT_LENGTH`` only speaks once that is done.
  :func:`server_options` sets waitress's cap one byte above the app's, so
  waitress stops reading a body (declared by ``Content-Length`` or streamed
  in chunks) as soon as it passes the app's limit. :func:`answer_in_problems`
  then has that refusal answered by the app itself, called with the
  request's headers and an empty body that claims the oversized length: the
  client gets the app's own answer (its problem+json 413, or a 401 where the
  app checks the token first) and the connection is closed. waitress's other
  refusals (malformed framing, headers over its cap) become problem+json too.
- **JSON bodies, at decoding.** :func:`decode_json_body` is the one decoder
  of request bodies. Beyond the grammar, it refuses what Python's ``json``
  takes but later steps cannot carry: nesting deeper than
  :data:`MAX_JSON_DEPTH` (Python's decoder runs out of stack a little deeper,
  and every later recursive step earlier), integers past the 4300 digits
  CPython converts, ``NaN``/``Infinity`` and numbers beyond a double, and
  ``\\ud800``-style escapes that leave a lone surrogate, which no UTF-8
  encoder (PostgreSQL's driver, Podman's API, the logs) accepts. It also
  refuses more than :data:`MAX_JSON_VALUES` array items and object members
  in one body: validating each costs microseconds (marshmallow spends about
  35 s of CPU on the five million wrong-typed items a 10 MiB body holds).
  Its cost is linear in the body's size.
"""

from __future__ import annotations

import copy
import io
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import RequestEntityTooLarge

from cynode_core.http_problems import PROBLEM_CONTENT_TYPE, problem_body
from cynode_core.logs import REQUEST_ID_HEADER, accept_request_id

# Far beyond any body of the wire contract (a capability report nests 4 levels
# and holds a few dozen values).
MAX_JSON_DEPTH = 64
MAX_JSON_VALUES = 100_000

# A "\uD800".."\uDFFF" escape; without one, no decoded string can hold a lone surrogate
# (strict UTF-8 decoding refuses an encoded one).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


# -- JSON bodies ---------------------------------------------------------------------


def decode_json_body(data: bytes) -> Any:
    """The JSON value of a request body; ``json.JSONDecodeError`` for any body refused (see the module's doc)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refused("body is not UTF-8", exc.start) from None
    try:
        value = json.loads(text, parse_constant=_not_json, parse_float=_finite_float)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError):  # an integer over 4300 digits, NaN, 1e999, nesting past the stack
        raise _refused("body holds a value JSON cannot carry") from None
    # Counted in the text first (in C): fewer openers than the depth limit cannot nest past
    # it, and fewer commas and openers than the value limit cannot hold that many values.
    containers = text.count("[") + text.count("{")
    if containers > MAX_JSON_DEPTH or containers + text.count(",") >= MAX_JSON_VALUES:
        too_much = _shape_refusal(value)
        if too_much:
            raise _refused(too_much)
    if _SURROGATE_ESCAPE.search(text) and _holds_lone_surrogate(value):
        raise _refused("body holds a lone UTF-16 surrogate")
    return value


def _refused(reason: str, pos: int = 0) -> json.JSONDecodeError:
    # A non-empty document: webargs reads an empty one as "no body".
    return json.JSONDecodeError(reason, "-", pos)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite_float(literal: str) -> float:
    number = float(literal)
    if math.isinf(number):
        raise ValueError(f"{literal[:20]} is beyond a double")
    return number


def _shape_refusal(value: Any) -> str | None:
    """Why ``value`` nests too deep or holds too many values; ``None`` when it does neither.

    Level by level, so no stack runs out, and only containers are kept for the next level.
    """
    level: list[Any] = [value] if type(value) is dict or type(value) is list else []
    depth, values = 1, 0
    while level:
        if depth > MAX_JSON_DEPTH:
            return f"body nests deeper than {MAX_JSON_DEPTH} levels"
        below: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            values += len(children)
            if values > MAX_JSON_VALUES:
                return f"body holds more than {MAX_JSON_VALUES} values"
            below += [child for child in children if type(child) is dict or type(child) is list]
        level, depth = below, depth + 1
    return None


def _holds_lone_surrogate(value: Any) -> bool:
    """Whether a key or string cannot be encoded as UTF-8 (the depth is already bounded)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# -- body size at the server -------------------------------------------------------------


def server_options(max_body: int) -> dict[str, Any]:
    """waitress settings for an app that takes bodies of up to ``max_body`` bytes.

    waitress refuses a body of its cap or more; one byte above the app's cap
    leaves the bodies the app takes to the app. waitress also drops every
    ``X-Forwarded-*`` header by default; they are passed on, since the
    orchestrator decides itself whose to believe (its ``trusted_proxies``).
    """
    return {"max_request_body_size": max_body + 1, "clear_untrusted_proxy_headers": False}


class _OversizeTask(WSGITask):
    """The app's answer to a request whose body waitress stopped reading: its headers, an empty body.

    ``CONTENT_LENGTH`` keeps the declared length (or, for a chunked body, the
    cap it passed), so the app's own size check answers. The rest of the
    body is still on the socket: the connection is closed after the answer.
    """

    def get_environment(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environment()
        declared = self.request.content_length or 0
        # The request's own cap: an upload route's is larger than the server's (see LargeBodies).
        environ["CONTENT_LENGTH"] = str(max(declared, self.request.adj.max_request_body_size))
        environ["wsgi.input"] = io.BytesIO()
        return environ

    def execute(self) -> None:
        self.set_close_on_finish()
        super().execute()


class _ProblemErrorTask(ErrorTask):
    """waitress's own refusals, in problem+json."""

    def execute(self) -> None:
        error = self.request.error
        body = json.dumps(problem_body(error.code, error.body)).encode() + b"\n"
        self.status = f"{error.code} {error.reason}"
        rid = accept_request_id(self.request.headers.get(REQUEST_ID_HEADER.upper().replace("-", "_")))
        self.response_headers.extend([("Content-Type", PROBLEM_CONTENT_TYPE), (REQUEST_ID_HEADER, rid)])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


def _error_task(channel: HTTPChannel, request: Any) -> ErrorTask | WSGITask:
    if isinstance(request.error, RequestEntityTooLarge) and request.headers_finished:
        return _OversizeTask(channel, request)
    return _ProblemErrorTask(channel, request)


class _ProblemChannel(HTTPChannel):
    error_task_class = staticmethod(_error_task)


@dataclass(frozen=True)
class LargeBodies:
    """Routes that take bodies over the server's cap: ``(path prefix, cap)`` pairs, for the methods given."""

    routes: tuple[tuple[str, int], ...]
    methods: tuple[str, ...] = ("POST", "PUT")

    def cap_of(self, method: str, path: str) -> int | None:
        if method not in self.methods:
            return None
        caps = [cap for prefix, cap in self.routes if path.startswith(prefix)]
        return max(caps) if caps else None


def _parser_for(large: LargeBodies) -> type[HTTPRequestParser]:
    class RoutedParser(HTTPRequestParser):
        """Once the request line is read, a route that takes large bodies gets its own cap; every other
        request keeps the server's, so a body too large for it is still refused before it is read."""

        def parse_header(self, header_plus: bytes) -> None:
            super().parse_header(header_plus)
            cap = large.cap_of(self.command, self.path)
            if cap is not None:
                adj: Any = copy.copy(getattr(self, "adj"))  # noqa: B009 - waitress leaves it untyped
                adj.max_request_body_size = max(cap + 1, adj.max_request_body_size)
                self.adj = adj

    return RoutedParser


def answer_in_problems(server: Any, socket_map: dict[int, Any], large: LargeBodies | None = None) -> None:
    """Have every listener of ``server`` (one, or several sharing ``socket_map``) answer its refusals as above;
    ``large`` names the routes that take larger bodies than the server's cap."""
    channel: type[_ProblemChannel] = _ProblemChannel
    if large is not None:
        parser = _parser_for(large)

        class RoutedProblemChannel(_ProblemChannel):
            parser_class = parser

        channel = RoutedProblemChannel
    listeners = [server] if isinstance(server, BaseWSGIServer) else []
    listeners += [d for d in socket_map.values() if isinstance(d, BaseWSGIServer) and d is not server]
    for listener in listeners:
        listener.channel_class = channel
