"""Counters in PostgreSQL (``rate_limit_counters``), so every orchestrator shares the limits.

A row is ``(key, window_start, count)``. Fixed windows: :func:`take` and
:func:`bump` count into the window that started at ``window_start`` and start
a new one once it is ``window`` seconds old. Marks: :func:`mark` moves
``window_start`` to now on every event, so :func:`since` tells how long ago
the last one was.
"""

from __future__ import annotations

import math

from sqlalchemy import text
from sqlalchemy.orm import Session

_TAKE = text(
    """
    INSERT INTO rate_limit_counters AS c (key, window_start, count) VALUES (:key, now(), 1)
    ON CONFLICT (key) DO UPDATE SET
      window_start = CASE WHEN c.window_start <= now() - make_interval(secs => :window) THEN now() ELSE c.window_start END,
      count = CASE WHEN c.window_start <= now() - make_interval(secs => :window) THEN 1 ELSE c.count + 1 END
    WHERE c.window_start <= now() - make_interval(secs => :window) OR c.count < :limit
    RETURNING count
    """
)

_STATE = text(
    "SELECT count, EXTRACT(EPOCH FROM (window_start + make_interval(secs => :window) - now())) "
    "FROM rate_limit_counters WHERE key = :key"
)

# clock_timestamp(), not now(): a mark written after a slow password check
# must carry the time of the failure, not of the transaction's start.
_MARK = text(
    """
    INSERT INTO rate_limit_counters AS c (key, window_start, count) VALUES (:key, clock_timestamp(), 1)
    ON CONFLICT (key) DO UPDATE SET window_start = clock_timestamp(), count = c.count + 1
    """
)

_SINCE = text("SELECT EXTRACT(EPOCH FROM (clock_timestamp() - window_start)) FROM rate_limit_counters WHERE key = :key")

_CLEAR = text("DELETE FROM rate_limit_counters WHERE key = :key OR starts_with(key, CAST(:prefix AS text))")

UNLIMITED = 2**31 - 1


def take(session: Session, key: str, *, limit: int, window: float) -> int | None:
    """Count one attempt; ``None`` when the window is full (the attempt is not counted).

    Returns the seconds to wait in the ``None`` case through :func:`retry_after`.
    """
    row = session.execute(_TAKE, {"key": key, "limit": limit, "window": window}).first()
    return None if row is None else int(row[0])


def retry_after(session: Session, key: str, *, window: float) -> int:
    row = session.execute(_STATE, {"key": key, "window": window}).first()
    if row is None:
        return 1
    return max(1, math.ceil(float(row[1])))


def is_full(session: Session, key: str, *, limit: int, window: float) -> int | None:
    """Seconds until ``key`` frees up when it already holds ``limit`` counts, else ``None``."""
    row = session.execute(_STATE, {"key": key, "window": window}).first()
    if row is None or float(row[1]) <= 0 or int(row[0]) < limit:
        return None
    return max(1, math.ceil(float(row[1])))


def count(session: Session, key: str, *, window: float) -> int:
    """The count of ``key``'s current window (0 once the window is over)."""
    row = session.execute(_STATE, {"key": key, "window": window}).first()
    return 0 if row is None or float(row[1]) <= 0 else int(row[0])


def bump(session: Session, key: str, *, window: float) -> None:
    """Count one event with no limit (failed logins)."""
    session.execute(_TAKE, {"key": key, "limit": UNLIMITED, "window": window})


def mark(session: Session, key: str) -> None:
    """Record that an event happened now."""
    session.execute(_MARK, {"key": key})


def since(session: Session, key: str) -> float | None:
    """Seconds since the last :func:`mark` of ``key``, ``None`` when never marked."""
    value = session.scalar(_SINCE, {"key": key})
    return None if value is None else float(value)


def clear(session: Session, key: str, *, prefix: str | None = None) -> int:
    """Delete ``key`` (and every key starting with ``prefix``); the number of rows deleted."""
    result = session.execute(_CLEAR, {"key": key, "prefix": prefix})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
