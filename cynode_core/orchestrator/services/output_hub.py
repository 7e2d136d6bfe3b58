"""One LISTEN connection per process that wakes every follower of a task's output.

A follower (an SSE stream of ``GET /v1/tasks/{id}/logs?follow=true``)
holds no database connection while it waits: it registers a
:class:`threading.Event` here, sleeps on it, and reads new chunks with a
short pooled session when woken. The hub's one thread ``LISTEN``\\ s on
:data:`~cynode_core.orchestrator.services.job_output.CHANNEL`, whose
notifications carry a task id (new output, or a status change), and sets
the events of that task's followers. Whoever wrote the row, on whichever
orchestrator, the notification reaches every process of the database.

The thread runs only while someone follows: the first follower starts it,
and it ends (closing its connection) within a second of the last one
leaving. Each time it (re)connects it wakes every follower, since a
notification sent while it was not listening is lost; while it is not
listening, followers also read again at every heartbeat, so an outage of
the channel delays them, never loses output. While it listens, a quiet
follower reads nothing at all.

The number of followers is capped (:class:`TooManyFollowers`): each holds a
request thread of the HTTP server for as long as it follows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from cynode_core.orchestrator.services.job_output import CHANNEL

log = logging.getLogger(__name__)


class TooManyFollowers(Exception):
    """This process already serves as many followers as it may."""


@dataclass(eq=False)
class Follower:
    """One registration: ``wake`` is set when the task may have new output or a new status."""

    task_id: str
    wake: threading.Event = field(default_factory=threading.Event)


class OutputHub:
    def __init__(self, url: str, limit: int, *, on_count: Callable[[int], None] | None = None):
        """``url``: the database (any SQLAlchemy or libpq spelling); ``on_count`` hears the follower count."""
        self.url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.limit = limit
        self.on_count = on_count
        self._lock = threading.Lock()
        self._followers: dict[str, set[Follower]] = {}
        self._count = 0
        self._thread: threading.Thread | None = None
        self._listening = False

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    @property
    def listening(self) -> bool:
        """True while the LISTEN connection is up: a follower not woken has nothing new to read."""
        return self._listening

    def join(self, task_id: str) -> Follower:
        """Register a follower of ``task_id``; ``TooManyFollowers`` past the limit. Pair with :meth:`leave`."""
        follower = Follower(task_id)
        with self._lock:
            if self._count >= self.limit:
                raise TooManyFollowers
            self._count += 1
            self._followers.setdefault(task_id, set()).add(follower)
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen, name="output-hub", daemon=True)
                self._thread.start()
            count = self._count
        self._report(count)
        return follower

    def leave(self, follower: Follower) -> None:
        """Unregister ``follower``; a second call does nothing."""
        with self._lock:
            same_task = self._followers.get(follower.task_id)
            if same_task is None or follower not in same_task:
                return
            same_task.discard(follower)
            if not same_task:
                del self._followers[follower.task_id]
            self._count -= 1
            count = self._count
        self._report(count)

    def _report(self, count: int) -> None:
        if self.on_count is not None:
            self.on_count(count)

    def _wake(self, task_id: str | None) -> None:
        with self._lock:
            if task_id is None:
                woken = [f for group in self._followers.values() for f in group]
            else:
                woken = list(self._followers.get(task_id, ()))
        for follower in woken:
            follower.wake.set()

    def _done(self) -> bool:
        """True (and the thread forgotten, so the next follower starts one) when nobody follows.

        Also True for a thread that is no longer the hub's (one started after
        it had given up): exactly one thread listens at a time.
        """
        with self._lock:
            if self._thread is not threading.current_thread():
                return True
            if self._count:
                return False
            self._thread, self._listening = None, False
            return True

    def _listen(self) -> None:
        failures = 0
        while not self._done():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    with self._lock:
                        self._listening = self._thread is threading.current_thread()
                    failures = 0
                    self._wake(None)  # what was written while nobody listened
                    while True:
                        for note in conn.notifies(timeout=1.0):
                            self._wake(note.payload)
                        if self._done():
                            return
            except Exception as exc:  # noqa: BLE001 - reconnect; followers read at every heartbeat meanwhile
                with self._lock:
                    if self._thread is threading.current_thread():
                        self._listening = False
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "output hub: LISTEN connection lost (%s); reconnecting", type(exc).__name__)
                self._wake(None)
                threading.Event().wait(min(float(failures), 5.0))
