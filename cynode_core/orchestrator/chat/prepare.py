"""What a chat turn sends its model, built before the answer starts (chat contract 4.2 steps 2 to 8).

:func:`prepare` does everything that may still be answered with an HTTP
error: the model check, the project (``OpenAI-Project``), redaction of every
message, the thread (the active one, the one ``previous_response_id`` names,
or the one of cynode's ``X-CyNodeAI-Thread`` header), the stored user
message, the title, and the model's context: the thread's newest messages
within the history limits, or the request's own messages for a tool round
trip, with the system message of the path.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from cynode_core.orchestrator.chat.errors import ChatError, invalid
from cynode_core.orchestrator.chat.inference import ModelRouter
from cynode_core.orchestrator.chat.wire import ChatRequest, InMessage
from cynode_core.orchestrator.db import Database
from cynode_core.orchestrator.models.chat import ChatThread
from cynode_core.orchestrator.services import chat_threads
from cynode_core.orchestrator.services.redaction import redact
from cynode_core.orchestrator.services.tasks import default_project
from cynode_core.orchestrator.settings import OrchestratorSettings

PM_SYSTEM_PROMPT = (
    "You are the project manager of a self-hosted CyNodeAI cluster. You help the user plan and follow "
    "their work: answer clearly and briefly, and say so when you do not know."
)


@dataclass
class Prepared:
    """A turn ready to run: who, where, and the Ollama body for the model."""

    user_id: uuid.UUID
    project_id: uuid.UUID
    thread_id: uuid.UUID
    request: ChatRequest
    model: str  # the model the node runs (the PM's model for cynodeai.pm)
    body: dict[str, Any]
    endpoint: str
    request_id: str | None
    input_kinds: tuple[str, ...]
    context_chars: int
    extra_metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def route(self) -> str:
        return "pm" if self.request.is_pm else "direct"


def effective_project(session: Any, user_id: uuid.UUID, header: str | None) -> uuid.UUID:
    """The ``OpenAI-Project`` header's project, which must be the caller's own; absent: the default."""
    own = default_project(session, user_id)
    if header is None:
        return own
    try:
        wanted = uuid.UUID(header.strip())
    except ValueError:
        wanted = None
    if wanted != own:
        raise invalid("OpenAI-Project is not a project you may use", "OpenAI-Project")
    return own


def _ollama_message(message: InMessage, text: str) -> dict[str, Any]:
    role = "system" if message.role == "developer" else message.role
    out: dict[str, Any] = {"role": role, "content": text}
    if message.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": c.name, "arguments": _arguments(c.arguments)}} for c in message.tool_calls
        ]
    if message.role == "tool" and message.name:
        out["tool_name"] = message.name
    return out


def _arguments(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


THREAD_HEADER = "X-CyNodeAI-Thread"


def _thread(
    session: Any,
    settings: OrchestratorSettings,
    user_id: uuid.UUID,
    project_id: uuid.UUID,
    previous_response_id: str | None,
    thread_header: str | None,
) -> ChatThread:
    """The turn's thread: ``previous_response_id``'s, the ``X-CyNodeAI-Thread`` one, else the active one."""
    if previous_response_id is not None:
        found = chat_threads.thread_of_response(session, user_id, previous_response_id)
        if found is None or found.project_id != project_id:
            raise invalid("previous_response_id not found or not owned by you", "previous_response_id")
        return found
    if thread_header is not None:
        try:
            found = chat_threads.own_thread(session, user_id, uuid.UUID(thread_header.strip()))
        except ValueError:
            found = None
        if found is None or found.project_id != project_id:
            raise invalid(f"{THREAD_HEADER} is not a thread of yours in this project", THREAD_HEADER)
        return found
    return chat_threads.active_thread(session, user_id, project_id, settings.chat_thread_idle_seconds)


def prepare(
    db: Database,
    settings: OrchestratorSettings,
    router: ModelRouter,
    request: ChatRequest,
    *,
    user_id: uuid.UUID,
    project_header: str | None,
    endpoint: str,
    request_id: str | None,
    previous_response_id: str | None = None,
    thread_header: str | None = None,
    system: str | None = None,
) -> Prepared:
    """Check, store the user turn and build the model's context; ``ChatError`` for what the client must fix."""
    if request.is_pm:
        model = settings.pma_model or settings.inference_model
        if not settings.pma_enabled or not router.serves(model):
            raise ChatError(503, "model_unavailable", "PM agent is not available")
    else:
        model = request.model
        if not router.serves(model):
            raise ChatError(404, "model_not_found", f"The model {model[:100]!r} does not exist", param="model")
    redacted = [(m, redact(m.text or "")) for m in request.messages]
    kinds = tuple(sorted({k for _, r in redacted for k in r.kinds}))
    users = [r.text for m, r in redacted if m.role == "user" and r.text.strip()]
    if not users:
        raise invalid("At least one user message is required", "messages")
    with db.session() as session:
        project_id = effective_project(session, user_id, project_header)
        thread = _thread(session, settings, user_id, project_id, previous_response_id, thread_header)
        continuing = request.continues_tool_calls and redacted[-1][0].role != "user"
        if not continuing:
            chat_threads.append_message(session, thread, "user", users[-1])
        chat_threads.set_title_if_none(session, thread, chat_threads.title_from(users[0]))
        past = chat_threads.history(
            session, thread.id, max_messages=settings.chat_history_messages, max_chars=settings.chat_history_chars
        )
        thread_key = thread.id
    if request.continues_tool_calls or not past:
        # A tool round trip lives in the request (the thread keeps user turns and answers only).
        messages = [_ollama_message(m, r.text) for m, r in redacted if m.role not in ("system", "developer")]
    else:
        messages = [{"role": h.role, "content": h.content} for h in past if h.role in ("user", "assistant")]
    if request.is_pm:
        messages.insert(0, {"role": "system", "content": PM_SYSTEM_PROMPT})
    else:
        systems = [r.text for m, r in redacted if m.role in ("system", "developer")]
        if system is not None:
            systems.append(redact(system).text)
        if systems:
            messages.insert(0, {"role": "system", "content": systems[-1]})
    body: dict[str, Any] = {"model": model, "messages": messages}
    if not request.is_pm:
        if request.options:
            body["options"] = dict(request.options)
        if request.tools and request.tool_choice != "none":
            body["tools"] = list(request.tools)
            if request.tool_choice not in (None, "auto"):
                body["tool_choice"] = request.tool_choice
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return Prepared(user_id, project_id, thread_key, request, model, body, endpoint, request_id, kinds, chars)
