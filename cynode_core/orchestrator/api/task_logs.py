"""Following a task's output: ``GET /v1/tasks/{ref}/logs?follow=true`` as server-sent events.

docs/wire_contract.md#tasks-logs-follow describes the stream. This module
builds the response of :func:`follow_response`, called by the logs view of
``api/tasks.py`` once the task is found (owner or admin, else 404).

The stream runs in the request thread waitress gave the request, after the
view has returned: it holds no request context and no database connection
while it waits. It sleeps on its
:class:`~cynode_core.orchestrator.services.output_hub.Follower` event (or
the heartbeat interval), then reads the task's status and its chunks after
the last one sent, with a short pooled session each time. A client that
goes away is noticed when a write to its closed connection fails (the
second or third keepalive at the latest): waitress then closes the
iterator, which ends the stream and frees its place among the followers.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

from flask import Response, current_app, request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from cynode_core.contract.errors import InvalidInput, Unavailable
from cynode_core.contract.job import TaskStatus
from cynode_core.orchestrator.api.http import app_extension
from cynode_core.orchestrator.services import job_output
from cynode_core.orchestrator.services.output_hub import Follower, OutputHub, TooManyFollowers

log = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
# Chunks read (and sent in one write) at a time.
READ_BATCH = 500
# What a client waits before reconnecting after a dropped stream (the SSE ``retry`` field, ms).
RECONNECT_MS = 1000


def output_hub() -> OutputHub:
    """This app's hub, made on first use (it starts its LISTEN thread only while someone follows)."""

    def make(state: Any) -> OutputHub:
        settings = state.settings
        followers = min(settings.log_followers, max(1, settings.http_threads // 2))
        return OutputHub(state.db.url, followers, on_count=state.metrics.log_followers.set)

    return app_extension("cynode_output_hub", make)  # type: ignore[no-any-return]


def follow_requested() -> bool:
    """``follow=true`` (or 1, yes, on) in the query.

    The OpenAPI document does not list ``follow``: its answer is an event
    stream that document cannot describe, and the document is frozen by the
    wire goldens; docs/wire_contract.md#tasks-logs-follow describes it.
    """
    return (request.args.get("follow") or "").strip().lower() in ("true", "1", "yes", "on")


def last_event_id() -> int:
    """Where a resumed stream starts: after the chunk its ``Last-Event-ID`` names (0: from the first)."""
    raw = (request.headers.get("Last-Event-ID") or "").strip()
    if not raw:
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise InvalidInput("Last-Event-ID must be the id of an event of this stream")
    return int(raw)


def wants_event_stream() -> bool:
    """True unless the client's Accept header rules ``text/event-stream`` out."""
    if not request.headers.get("Accept"):
        return True
    return request.accept_mimetypes[EVENT_STREAM] > 0


def event(name: str, data: dict[str, Any], event_id: int | None = None) -> str:
    """One server-sent event; ``data`` is JSON on a single line (JSON escapes every line break)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def follow_response(task_id: uuid.UUID, stream: str) -> Response:
    """The event stream of ``task_id`` after the client's ``Last-Event-ID``; 503 when this process is full."""
    if not wants_event_stream():
        raise InvalidInput("follow=true answers text/event-stream only; send Accept: text/event-stream")
    after = last_event_id()
    state = current_app.extensions["cynode"]
    hub = output_hub()
    try:
        follower = hub.join(str(task_id))
    except TooManyFollowers:
        log.warning("log follow of task %s refused: %d followers already (CYNODE_LOG_FOLLOWERS)", task_id, hub.limit)
        raise Unavailable(
            "Too many log followers on this orchestrator; try again later or another orchestrator",
            retry_after=max(state.settings.log_follow_heartbeat, 1.0),
        ) from None
    body = _events(state.db, hub, follower, task_id, stream, after, state.settings.log_follow_heartbeat)
    response = Response(body, status=200, mimetype=EVENT_STREAM)
    # Whether the stream ran to its end or not (never started, client gone), its place is given back.
    response.call_on_close(lambda: hub.leave(follower))
    response.headers["X-Accel-Buffering"] = "no"  # a proxy in front must not hold events back
    return response


def _events(
    db: Any, hub: OutputHub, follower: Follower, task_id: uuid.UUID, stream: str, after: int, heartbeat: float
) -> Iterator[bytes]:
    yield f"retry: {RECONNECT_MS}\n\n".encode()
    sent_status: str | None = None
    read = True
    while True:
        if read:
            follower.wake.clear()  # set again by anything that happens from here on
            try:
                with db.session() as session:
                    # Status first: chunks written with a terminal status are visible to the read after it.
                    stored = session.execute(text("SELECT status FROM tasks WHERE id = :id"), {"id": task_id}).scalar()
                    chunks = job_output.read_after(session, task_id, after, READ_BATCH)
            except SQLAlchemyError as exc:
                # No end event: the client comes back with Last-Event-ID (to this or another orchestrator).
                log.warning("follow of task %s cut: database unavailable (%s)", task_id, type(exc).__name__)
                return
            status = TaskStatus(stored) if stored is not None else TaskStatus.CANCELED
            out: list[str] = []
            if status.api_value != sent_status:
                sent_status = status.api_value
                out.append(event("status", {"status": sent_status}))
            for chunk in chunks:
                if stream in ("all", chunk.stream):
                    out.append(event(chunk.stream, {"job_id": str(chunk.job_id), "text": chunk.data}, chunk.seq))
                after = chunk.seq
            more = len(chunks) == READ_BATCH
            if not more and status.is_terminal:
                out.append(event("end", {"task_id": str(task_id), "status": status.api_value}))
                yield "".join(out).encode()
                return
            if out:
                yield "".join(out).encode()
            if more:
                continue
        if follower.wake.wait(heartbeat):
            read = True
        else:
            yield b": keepalive\n\n"
            # Not woken while the hub listens: nothing happened. Without the hub, read to be sure.
            read = not hub.listening
