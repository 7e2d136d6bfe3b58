"""Log set-up for the orchestrator and the node agent: text or JSON lines, and the request id.

A request id follows a task from the API through dispatch to the node: the
gateway takes the caller's ``X-Request-Id`` (or makes one), stores it with
the task, and the dispatcher sends it to the node on ``jobs:run`` and on
cancel. It lives in a context variable for the duration of a request or a
dispatched job, and :class:`ContextFilter` copies it (with ``task_id``,
``job_id``, ``node`` where a scope set them) onto every log record.

``CYNODE_LOG_FORMAT=json`` makes :func:`configure_logging` write one JSON
object per line (:class:`JsonFormatter`); the default stays human text.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from typing import Any

REQUEST_ID_HEADER = "X-Request-Id"
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("cynode_request_id", default=None)
_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("cynode_log_fields", default=None)


# -- the request id -------------------------------------------------------------


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(value: str | None) -> str:
    """``value`` when it is a well-formed request id (<= 128 of ``[A-Za-z0-9._-]``), else a new one.

    A caller's id is taken as a correlation handle only; the bound keeps
    log injection and unbounded values out.
    """
    if value and _REQUEST_ID_RE.fullmatch(value):
        return value
    return new_request_id()


def current_request_id() -> str | None:
    return _request_id.get()


@contextlib.contextmanager
def log_context(request_id: str | None = None, **fields: Any) -> Iterator[None]:
    """Within the block, log records carry ``request_id`` (when given) and ``fields`` (None values skipped)."""
    rid_token = _request_id.set(request_id) if request_id is not None else None
    merged = dict(_fields.get() or {})
    merged.update({k: v for k, v in fields.items() if v is not None})
    fields_token = _fields.set(merged)
    try:
        yield
    finally:
        _fields.reset(fields_token)
        if rid_token is not None:
            _request_id.reset(rid_token)


class ContextFilter(logging.Filter):
    """Copies the request id and the scope's fields onto each record (explicit ``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        for key, value in (_fields.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


# -- JSON lines ----------------------------------------------------------------------

# Attributes every LogRecord has; anything else on a record came from ``extra=`` or a filter.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, then any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def parse_log_format(value: Any) -> str:
    """A ``CYNODE_LOG_FORMAT`` value: ``text`` or ``json``."""
    text = str(value).strip().lower()
    if text not in LOG_FORMATS:
        raise ValueError(f"not a log format: {value!r} (use text or json)")
    return text


def make_handler(fmt: str = "text", stream: Any = None) -> logging.Handler:
    """A stream handler in ``fmt`` with the context filter attached."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    return handler


def configure_logging(level: int | str = logging.INFO, fmt: str = "text", stream: Any = None) -> None:
    """Root logging for a cynode process: one handler on stderr in ``fmt`` (``text`` or ``json``)."""
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        numeric = logging.INFO
    # Like basicConfig: a no-op when the root logger has handlers already (e.g. under pytest).
    logging.basicConfig(level=numeric, handlers=[make_handler(parse_log_format(fmt), stream)])


def bind_request_id(rid: str | None) -> contextvars.Token[str | None]:
    """Make ``rid`` the current request id (log records carry it) until :func:`unbind_request_id`."""
    return _request_id.set(rid)


def unbind_request_id(token: contextvars.Token[str | None]) -> None:
    try:
        _request_id.reset(token)
    except ValueError:  # set in another context (should not happen with WSGI): clear it instead
        _request_id.set(None)
