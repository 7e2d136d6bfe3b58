"""``/v1/chat/threads*``: the caller's chat threads and their messages (chat contract 7; Data REST, problem+json).

A thread is the caller's own or it does not exist (404 ``Thread not found``,
as for a wrong id). Creating a thread makes it the active conversation of
its (user, project) pair, which is how a client starts a new one.
"""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask import current_app, request
from flask.views import MethodView
from marshmallow import fields

from cynode_core.contract.errors import InvalidInput, NotFound
from cynode_core.orchestrator.api import Blueprint
from cynode_core.orchestrator.api.schemas_common import (
    OmitEmptySchema,
    PageQuerySchema,
    RequestSchema,
    Timestamp,
    int_param,
)
from cynode_core.orchestrator.api.tokens import current_user
from cynode_core.orchestrator.chat.errors import ChatError
from cynode_core.orchestrator.chat.prepare import effective_project
from cynode_core.orchestrator.models.chat import ChatMessage, ChatThread
from cynode_core.orchestrator.services import chat_threads

blp = Blueprint("chat_threads", __name__, url_prefix="/v1/chat/threads", description="Chat threads")

TITLE_MAX, SUMMARY_MAX = 200, 500
NOT_FOUND = "Thread not found"


class ThreadSchema(OmitEmptySchema):
    id = fields.String(required=True)
    thread_id = fields.String(required=True)
    title = fields.String()
    summary = fields.String()
    project_id = fields.String(required=True)
    created_at = Timestamp(required=True)
    updated_at = Timestamp(required=True)


class ThreadListSchema(ma.Schema):
    data = fields.List(fields.Nested(ThreadSchema), required=True)
    next_offset = fields.Integer()
    next_cursor = fields.String()


class MessageSchema(OmitEmptySchema):
    id = fields.String(required=True)
    role = fields.String(required=True)
    content = fields.String(required=True)
    metadata = fields.Dict()
    created_at = Timestamp(required=True)


class MessageListSchema(ma.Schema):
    data = fields.List(fields.Nested(MessageSchema), required=True)
    total_count = fields.Integer(required=True)
    next_offset = fields.Integer()
    next_cursor = fields.String()


class NewThreadSchema(RequestSchema):
    title = fields.Raw(
        load_default=None, allow_none=True, metadata={"type": "string", "description": "1 to 200 characters"}
    )
    project_id = fields.Raw(load_default=None, allow_none=True, metadata={"type": "string", "format": "uuid"})


class PatchThreadSchema(RequestSchema):
    title = fields.Raw(
        allow_none=True, metadata={"type": "string", "nullable": True, "description": "1 to 200 characters, or null"}
    )
    summary = fields.Raw(
        allow_none=True, metadata={"type": "string", "nullable": True, "description": "up to 500 characters, or null"}
    )


class ThreadPageQuerySchema(PageQuerySchema):
    project_id = fields.String(load_default=None)


def thread_body(thread: ChatThread) -> dict[str, Any]:
    return {
        "id": str(thread.id),
        "thread_id": str(thread.id),
        "title": thread.title,
        "summary": thread.summary,
        "project_id": str(thread.project_id),
        "created_at": thread.created_at,
        "updated_at": thread.updated_at,
    }


def message_body(message: ChatMessage) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "role": message.role,
        "content": message.content,
        "metadata": message.metadata_,
        "created_at": message.created_at,
    }


def _db() -> Any:
    return current_app.extensions["cynode"].db


def _project(session: Any, value: Any) -> uuid.UUID:
    """A project the caller may use: ``value`` (a body's), else the ``OpenAI-Project`` header, else the default."""
    header = value if value is not None else request.headers.get("OpenAI-Project")
    if header is not None and not isinstance(header, str):
        raise InvalidInput("project_id is not a project you may use")
    try:
        return effective_project(session, current_user().id, header)
    except ChatError as exc:
        raise InvalidInput("project_id is not a project you may use") from exc


def _text(value: Any, name: str, low: int, high: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not low <= len(value.strip()) <= high or "\x00" in value:
        raise InvalidInput(f"{name} must be {low} to {high} characters")
    return value.strip()


def _thread(session: Any, thread_id: str) -> ChatThread:
    try:
        key = uuid.UUID(thread_id)
    except ValueError as exc:
        raise InvalidInput("invalid thread id") from exc
    thread = chat_threads.own_thread(session, current_user().id, key)
    if thread is None:
        raise NotFound(NOT_FOUND)
    return thread


def _page(query: dict[str, Any], default: int) -> tuple[int, int]:
    limit = int_param(query["limit"], default, 1, 100)
    cursor = (query["cursor"] or "").strip()
    offset = int_param(cursor or query["offset"], 0, 0, 2**31 - 1)
    return limit, offset


@blp.route("")
class Threads(MethodView):
    @blp.operation(201, ThreadSchema, errors={400: "Bad title or project"}, bearer="user")
    @blp.arguments(NewThreadSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Start a new conversation: it becomes the active thread of its project for the caller's chats."""
        title = _text(body.get("title"), "title", 1, TITLE_MAX)
        with _db().session() as session:
            project_id = _project(session, body.get("project_id"))
            thread = chat_threads.create_thread(session, current_user().id, project_id, title)
            return thread_body(thread), 201

    @blp.operation(200, ThreadListSchema, errors={400: "Bad paging parameter or project"}, bearer="user")
    @blp.arguments(ThreadPageQuerySchema, location="query")
    def get(self, query: dict[str, Any]) -> Any:
        """My threads, newest `updated_at` first (filtered by `project_id` or the `OpenAI-Project` header)."""
        limit, offset = _page(query, 20)
        with _db().session() as session:
            filtered = query["project_id"] is not None or request.headers.get("OpenAI-Project") is not None
            project = _project(session, query["project_id"]) if filtered else None
            rows, more = chat_threads.list_threads(session, current_user().id, project, limit=limit, offset=offset)
            body: dict[str, Any] = {"data": [thread_body(t) for t in rows]}
        if more:
            body.update(next_offset=offset + limit, next_cursor=str(offset + limit))
        return body


@blp.route("/<string:thread_id>")
class Thread(MethodView):
    @blp.operation(200, ThreadSchema, errors={400: "Not a thread id", 404: NOT_FOUND}, bearer="user")
    def get(self, thread_id: str) -> Any:
        """One of my threads."""
        with _db().session() as session:
            return thread_body(_thread(session, thread_id))

    @blp.operation(200, ThreadSchema, errors={400: "Bad title or summary", 404: NOT_FOUND}, bearer="user")
    @blp.arguments(PatchThreadSchema)
    def patch(self, body: dict[str, Any], thread_id: str) -> Any:
        """Set or clear a thread's `title` and `summary` (at least one of them)."""
        if "title" not in body and "summary" not in body:
            raise InvalidInput("title is required in body")
        changes = {}
        if "title" in body:
            changes["title"] = _text(body["title"], "title", 1, TITLE_MAX)
        if "summary" in body:
            changes["summary"] = _text(body["summary"], "summary", 0, SUMMARY_MAX)
        with _db().session() as session:
            thread = chat_threads.patch_thread(session, _thread(session, thread_id), **changes)
            return thread_body(thread)


@blp.route("/<string:thread_id>/messages")
class ThreadMessages(MethodView):
    @blp.operation(200, MessageListSchema, errors={400: "Bad id or paging", 404: NOT_FOUND}, bearer="user")
    @blp.arguments(PageQuerySchema, location="query")
    def get(self, query: dict[str, Any], thread_id: str) -> Any:
        """A thread's messages, oldest first."""
        limit, offset = _page(query, 50)
        with _db().session() as session:
            thread = _thread(session, thread_id)
            rows, total = chat_threads.list_messages(session, thread.id, limit=limit, offset=offset)
            body: dict[str, Any] = {"data": [message_body(m) for m in rows], "total_count": total}
        if offset + len(rows) < total:
            body.update(next_offset=offset + limit, next_cursor=str(offset + limit))
        return body
