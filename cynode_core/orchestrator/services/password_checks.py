"""Password checks on a pool of their own, so a burst of logins never slows the rest of the API.

An argon2id check at the contract's cost takes about 0.15-0.2 s of CPU on
two lanes; 200 clients logging in at once are half a minute of both cores
of a small machine. The checks therefore run on ``workers`` threads of
their own, at a lower CPU priority (nice +10) than the request threads, so
task creates and polls keep the processor while logins queue. A login
waits for its check only while at most ``queue`` others wait before it;
past that (or after ``wait`` seconds) it gets 503 with a ``Retry-After``
estimated from the checks ahead of it. The number of request threads a
burst of logins can hold is thus bounded (``workers + queue``), and none
of them holds a database connection while it waits (services/auth).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from cynode_core.contract.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

NICE = 10  # added to the workers' CPU priority (Linux nice is per thread)
FIRST_ESTIMATE = 0.2  # seconds one check takes, until the first one is measured
BUSY = "Too many logins in progress, retry shortly"
REFUSALS_FADE = 5.0  # seconds over which a refused login stops counting in Retry-After
MAX_RETRY_AFTER = 60


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: checks keep the normal priority
        log.debug("password check threads keep their priority: %s", exc)


class PasswordChecks:
    """At most ``workers`` checks at once and ``queue`` waiting; every other login is 503 + ``Retry-After``."""

    def __init__(self, workers: int, queue: int, *, wait: float = 10.0):
        self.workers = max(1, workers)
        self.capacity = self.workers + max(0, queue)
        self.wait = wait
        self._pool = ThreadPoolExecutor(self.workers, "password-check", initializer=_lower_priority)
        self._lock = threading.Lock()
        self._admitted = 0
        self._seconds = FIRST_ESTIMATE  # moving average of one check's duration
        self._refused, self._refused_at = 0.0, time.monotonic()

    @property
    def admitted(self) -> int:
        """Checks running or queued now (waiting logins included)."""
        return self._admitted

    def retry_after(self) -> int:
        """Seconds until the logins admitted now, and those refused lately, could be checked (1 to 60).

        Refused logins come back: counting them (a sum that fades over
        :data:`REFUSALS_FADE` seconds) spreads a crowd of retries out
        instead of telling them all to return in one second.
        """
        waiting = self._admitted + self._refusals(time.monotonic())
        return min(MAX_RETRY_AFTER, max(1, math.ceil(waiting * self._seconds / self.workers)))

    def _refusals(self, now: float) -> float:
        return self._refused * math.exp(-(now - self._refused_at) / REFUSALS_FADE)

    def run(self, check: Callable[[], T]) -> T:
        """``check()`` on the pool, waited for; ``Unavailable`` when the queue is full or the wait too long."""
        with self._lock:
            if self._admitted >= self.capacity:
                now = time.monotonic()
                self._refused, self._refused_at = self._refusals(now) + 1, now
                raise Unavailable(BUSY, retry_after=self.retry_after())
            self._admitted += 1
        try:
            future = self._pool.submit(self._timed, check)
        except RuntimeError:  # the pool is shut down: the process is stopping
            self._release(None)
            raise Unavailable("The server is stopping, retry shortly", retry_after=1) from None
        future.add_done_callback(self._release)
        try:
            return future.result(timeout=self.wait)
        except FutureTimeout:
            future.cancel()  # not started yet: never runs; started: its answer is dropped
            raise Unavailable(BUSY, retry_after=self.retry_after()) from None
        except CancelledError:  # close() while it was queued
            raise Unavailable("The server is stopping, retry shortly", retry_after=1) from None

    def _timed(self, check: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return check()
        finally:
            took = time.perf_counter() - started
            with self._lock:
                self._seconds = 0.8 * self._seconds + 0.2 * took

    def _release(self, _future: Future[Any] | None) -> None:
        with self._lock:
            self._admitted -= 1

    def close(self) -> None:
        """Stop taking checks; queued ones are cancelled (their logins get 503), running ones finish."""
        self._pool.shutdown(wait=False, cancel_futures=True)
