"""The per-user cap on chat turns in flight (chat contract 2.3), and the chat surface's shared parts."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cynode_core.orchestrator.chat.errors import ChatError
from cynode_core.orchestrator.chat.inference import ModelRouter

RETRY_AFTER_SECONDS = 5


@dataclass
class TurnGate:
    """At most ``limit`` turns per user at once in this process; the next one is 429 ``rate_limited``."""

    limit: int
    _open: dict[uuid.UUID, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self, user_id: uuid.UUID) -> None:
        with self._lock:
            if self._open.get(user_id, 0) >= self.limit:
                raise ChatError(
                    429,
                    "rate_limited",
                    f"Too many chat requests in flight (at most {self.limit}); retry shortly",
                    retry_after=RETRY_AFTER_SECONDS,
                )
            self._open[user_id] = self._open.get(user_id, 0) + 1

    def leave(self, user_id: uuid.UUID) -> None:
        with self._lock:
            left = self._open.get(user_id, 1) - 1
            if left > 0:
                self._open[user_id] = left
            else:
                self._open.pop(user_id, None)

    @contextmanager
    def held(self, user_id: uuid.UUID) -> Iterator[None]:
        self.enter(user_id)
        try:
            yield
        finally:
            self.leave(user_id)


@dataclass
class ChatSurface:
    """What the chat views share in one orchestrator process."""

    router: ModelRouter
    gate: TurnGate
