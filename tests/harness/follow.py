"""Following a task's output over real HTTP, as a test watches it: :class:`EventTap`.

A tap opens ``GET /v1/tasks/{id}/logs?follow=true`` and reads it in a
thread: every server-sent event (parsed by the product's own parser) lands
in a queue with the time it arrived, every raw byte in :attr:`raw`, so a test
can assert what came, when, and that comments (keepalives) came too.
:meth:`close` drops the connection as a client that goes away does.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from typing import Any

import requests
from sqlalchemy import text

from cynode_core.client import ServerEvent, parse_events


class EventTap:
    def __init__(self, base_url: str, token: str, task_id: str, *, last_event_id: str | None = None, **params: str):
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.response = requests.get(
            f"{base_url}/v1/tasks/{task_id}/logs",
            params={"follow": "true", **params},
            headers=headers,
            stream=True,
            timeout=30,
        )
        self.events: queue.Queue[tuple[float, ServerEvent]] = queue.Queue()
        self.raw = bytearray()
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._read, name="event-tap", daemon=True)
        if self.response.status_code == 200:
            self._thread.start()

    def _chunks(self) -> Any:
        for chunk in self.response.iter_content(chunk_size=None):
            self.raw.extend(chunk)
            yield chunk

    def _read(self) -> None:
        try:
            for event in parse_events(self._chunks()):
                self.events.put((time.monotonic(), event))
        except Exception:  # noqa: BLE001 - a dropped connection ends the tap
            pass
        finally:
            self.ended.set()

    def next(self, timeout: float = 5.0, *, skip: tuple[str, ...] = ("status",)) -> tuple[float, ServerEvent]:
        """The next event not of a type in ``skip``, with its arrival time; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                arrived, event = self.events.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise AssertionError(f"no event within {timeout} s; raw so far: {bytes(self.raw)[-500:]!r}") from None
            if event.event not in skip:
                return arrived, event

    def lines(self, count: int, timeout: float = 5.0) -> list[ServerEvent]:
        return [self.next(timeout)[1] for _ in range(count)]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.response.raw.shutdown()  # wakes the reading thread at once (urllib3 >= 2.3)
        self.response.close()
        if self._thread.is_alive():
            self._thread.join(5)


def append_output(db: Any, task_id: str, stream: str, data: str) -> None:
    """What a node reporting live would cause: ``data`` appended to the task's job output (and notified)."""
    from cynode_core.orchestrator.services import job_output

    with db.session() as session:
        job_id = session.execute(text("SELECT id FROM jobs WHERE task_id = :t"), {"t": task_id}).scalar_one()
        job_output.append(session, uuid.UUID(str(job_id)), stream, data)


def finish(db: Any, task_id: str, status: str = "completed") -> None:
    """End the task as the dispatcher does when its job ends (store.finish_task)."""
    from cynode_core.contract.job import TaskStatus
    from cynode_core.orchestrator.dispatch.store import finish_task

    with db.session() as session:
        finish_task(session, task_id, TaskStatus(status))
