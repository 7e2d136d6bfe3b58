"""Fixed-window counters in PostgreSQL, so every orchestrator shares the limits."""

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


def bump(session: Session, key: str, *, window: float) -> None:
    """Count one event with no limit (failed logins per handle)."""
    session.execute(_TAKE, {"key": key, "limit": 2**31 - 1, "window": window})
