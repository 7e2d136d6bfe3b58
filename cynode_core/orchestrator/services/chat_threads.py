"""Chat threads and messages in PostgreSQL, and the chat audit log (chat contract 7, 8).

A thread belongs to one user and one project. The **active** thread of a
(user, project) pair is its thread with the newest ``last_activity_at``
within the idle limit; :func:`active_thread` finds it or starts one, under
a transaction-scoped advisory lock on the pair so two first requests at once
make one thread. Messages are stored redacted and never changed; appending
one moves the thread's ``last_activity_at``, a title change only its
``updated_at``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from cynode_core.orchestrator.models.chat import ChatAuditLog, ChatMessage, ChatThread

TITLE_CHARS = 80


def _lock_pair(session: Session, user_id: uuid.UUID, project_id: uuid.UUID) -> None:
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"chat-thread:{user_id}:{project_id}"})


def create_thread(session: Session, user_id: uuid.UUID, project_id: uuid.UUID, title: str | None = None) -> ChatThread:
    thread = ChatThread(id=uuid.uuid4(), user_id=user_id, project_id=project_id, title=title)
    session.add(thread)
    session.flush()
    session.refresh(thread)
    return thread


def active_thread(session: Session, user_id: uuid.UUID, project_id: uuid.UUID, idle_seconds: float) -> ChatThread:
    """The pair's thread active within ``idle_seconds``, or a new one."""
    _lock_pair(session, user_id, project_id)
    thread = session.scalar(
        select(ChatThread)
        .where(
            ChatThread.user_id == user_id,
            ChatThread.project_id == project_id,
            ChatThread.last_activity_at > func.now() - dt.timedelta(seconds=idle_seconds),
        )
        .order_by(ChatThread.last_activity_at.desc())
        .limit(1)
    )
    return thread if thread is not None else create_thread(session, user_id, project_id)


def own_thread(session: Session, user_id: uuid.UUID, thread_id: uuid.UUID) -> ChatThread | None:
    return session.scalar(select(ChatThread).where(ChatThread.id == thread_id, ChatThread.user_id == user_id))


def thread_of_response(session: Session, user_id: uuid.UUID, response_id: str) -> ChatThread | None:
    """The caller's thread holding the assistant message of ``response_id``."""
    return session.scalar(
        select(ChatThread)
        .join(ChatMessage, ChatMessage.thread_id == ChatThread.id)
        .where(ChatMessage.metadata_["response_id"].astext == response_id, ChatThread.user_id == user_id)
        .limit(1)
    )


def append_message(
    session: Session, thread: ChatThread, role: str, content: str, metadata: dict[str, Any] | None = None
) -> ChatMessage:
    # clock_timestamp, not now(): messages of one transaction keep the order they were written in.
    message = ChatMessage(
        id=uuid.uuid4(),
        thread_id=thread.id,
        role=role,
        content=content,
        metadata_=metadata,
        created_at=func.clock_timestamp(),
    )
    session.add(message)
    session.execute(
        update(ChatThread).where(ChatThread.id == thread.id).values(last_activity_at=func.now(), updated_at=func.now())
    )
    session.flush()
    return message


def title_from(text_: str) -> str | None:
    """A thread's automatic title: the first non-empty line, at most 80 characters."""
    for line in text_.splitlines():
        if line.strip():
            return line.strip()[:TITLE_CHARS]
    return None


def set_title_if_none(session: Session, thread: ChatThread, title: str | None) -> None:
    if title:
        session.execute(
            update(ChatThread).where(ChatThread.id == thread.id, ChatThread.title.is_(None)).values(title=title)
        )


@dataclass(frozen=True)
class HistoryMessage:
    role: str
    content: str
    metadata: dict[str, Any] | None = None


def history(session: Session, thread_id: uuid.UUID, *, max_messages: int, max_chars: int) -> list[HistoryMessage]:
    """The thread's newest messages, oldest first: at most ``max_messages`` and ``max_chars`` in all.

    The newest message is always kept, even alone over the budget.
    """
    rows = session.execute(
        select(ChatMessage.role, ChatMessage.content, ChatMessage.metadata_)
        .where(ChatMessage.thread_id == thread_id)
        .order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())
        .limit(max_messages)
    ).all()
    kept: list[HistoryMessage] = []
    used = 0
    for role, content, metadata in rows:
        if kept and used + len(content) > max_chars:
            break
        kept.append(HistoryMessage(role, content, metadata))
        used += len(content)
    return list(reversed(kept))


def list_threads(
    session: Session, user_id: uuid.UUID, project_id: uuid.UUID | None, *, limit: int, offset: int
) -> tuple[list[ChatThread], bool]:
    """A page of the caller's threads, newest ``updated_at`` first, and whether more follow."""
    query = select(ChatThread).where(ChatThread.user_id == user_id)
    if project_id is not None:
        query = query.where(ChatThread.project_id == project_id)
    rows = list(
        session.scalars(query.order_by(ChatThread.updated_at.desc(), ChatThread.id).offset(offset).limit(limit + 1))
    )
    return rows[:limit], len(rows) > limit


def list_messages(session: Session, thread_id: uuid.UUID, *, limit: int, offset: int) -> tuple[list[ChatMessage], int]:
    """A page of a thread's messages, oldest first, and how many the thread has."""
    total = session.scalar(select(func.count()).select_from(ChatMessage).where(ChatMessage.thread_id == thread_id))
    rows = session.scalars(
        select(ChatMessage)
        .where(ChatMessage.thread_id == thread_id)
        .order_by(ChatMessage.created_at, ChatMessage.id)
        .offset(offset)
        .limit(limit)
    )
    return list(rows), int(total or 0)


_UNSET: Any = object()


def patch_thread(session: Session, thread: ChatThread, *, title: Any = _UNSET, summary: Any = _UNSET) -> ChatThread:
    values: dict[str, Any] = {"updated_at": func.now()}
    if title is not _UNSET:
        values["title"] = title
    if summary is not _UNSET:
        values["summary"] = summary
    session.execute(update(ChatThread).where(ChatThread.id == thread.id).values(**values))
    session.refresh(thread)
    return thread


UNSET = _UNSET


def audit(session: Session, **row: Any) -> None:
    """One ``chat_audit_log`` row (never the content)."""
    session.add(ChatAuditLog(id=uuid.uuid4(), **row))
