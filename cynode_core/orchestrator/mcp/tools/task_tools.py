"""The task tools: ``task.create``, ``.ready``, ``.get``, ``.list``, ``.result``, ``.logs``, ``.cancel``.

They run the REST routes' services (``services.tasks``, ``task_ready``,
``task_views``) with the token's user as caller and no admin rights
(mcp_contract.md 6, 7). A task an agent creates is always a draft: nothing
runs until ``task.ready`` (agents_contract.md 2.2).
"""

from __future__ import annotations

from typing import Any

from cynode_core.contract.job import TASK_API_STATUSES
from cynode_core.orchestrator.mcp.registry import McpTool, ToolCall
from cynode_core.orchestrator.mcp.tools import schema
from cynode_core.orchestrator.mcp.tools.results import (
    Page,
    invalid_arguments,
    next_page,
    service_errors,
    to_json,
)
from cynode_core.orchestrator.mcp.tools.scoping import authorized_projects, owned_task, uuid_argument
from cynode_core.orchestrator.services import tasks
from cynode_core.orchestrator.services.task_ready import ready_task
from cynode_core.orchestrator.services.task_views import result_view, task_view

# The prompt a handler accepts; the published schema asks for less (small models write short prompts).
MAX_PROMPT = 65_536
PUBLISHED_MAX_PROMPT = 2_000
TASK_ID = schema.arguments({"task_id": schema.UUID}, "task_id")
# ``task.get`` answers these members of a TaskResponse, then the task's owner and project.
_GET_KEYS = ("id", "task_id", "status", "planning_state", "task_name", "prompt", "summary")


def _project_for_new_task(call: ToolCall, requested: str | None) -> str:
    """The ``project_id`` argument when it is one of U's projects; absent, the token's project, else U's default."""
    user_id = call.principal.user_id
    if requested:
        wanted = uuid_argument(requested, "project_id")
        if wanted not in authorized_projects(call.session, user_id):
            raise invalid_arguments("Invalid project_id")
        return str(wanted)
    if call.principal.project_id is not None:
        return str(call.principal.project_id)
    return str(tasks.default_project(call.session, user_id))


def create(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    prompt = arguments.get("prompt") or ""
    if not prompt:
        raise invalid_arguments("prompt is required")
    if len(prompt) > MAX_PROMPT:
        raise invalid_arguments(f"prompt is longer than {MAX_PROMPT} characters")
    mode = arguments.get("input_mode") or "prompt"
    new = tasks.NewTask(
        prompt=prompt,
        input_mode=mode,
        use_inference=bool(arguments.get("use_inference")) or mode == "prompt",
        task_name=arguments.get("task_name"),
        project_id=_project_for_new_task(call, arguments.get("project_id")),
        attachments=list(arguments.get("attachments") or []),
        request_id=call.request_id,
        draft=True,
        use_sba=bool(arguments.get("use_sba")),
    )
    with service_errors():
        created = tasks.create_task(call.session, call.state.settings, call.principal.user_id, new)
    call.task_id, call.project_id = created.task.id, created.task.project_id
    return to_json(task_view(created))


def ready(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    task = owned_task(call, arguments["task_id"])
    with service_errors():
        task = ready_task(call.session, call.state.settings, task)
    return to_json(task_view(tasks.with_attachments(call.session, task)))


def get(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    task = owned_task(call, arguments["task_id"])
    view = task_view(tasks.TaskWithAttachments(task, []))
    return to_json(
        {k: view[k] for k in _GET_KEYS}
        | {
            "created_by": task.created_by,
            "project_id": task.project_id,
            "created_at": view["created_at"],
            "updated_at": view["updated_at"],
        }
    )


def list_(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    page = Page.of(arguments)
    found, next_offset = tasks.list_tasks(
        call.session, call.principal.user_id, limit=page.limit, offset=page.offset, status=arguments.get("status")
    )
    return to_json({"tasks": [task_view(f) for f in found], **next_page(next_offset)})


def result(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    task = owned_task(call, arguments["task_id"])
    view = result_view(call.session, task)
    view["jobs"], next_offset = Page.of(arguments).window(view["jobs"])
    return to_json(view | next_page(next_offset))


def logs(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    task = owned_task(call, arguments["task_id"])
    jobs, next_offset = Page.of(arguments).window(tasks.jobs_of(call.session, task.id))
    stdout, stderr = tasks.logs(jobs, arguments.get("stream") or "all")
    return to_json({"task_id": task.id, "stdout": stdout, "stderr": stderr} | next_page(next_offset))


def cancel(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    task = owned_task(call, arguments["task_id"])
    # REST's writes, in the gateway's transaction (so with the call's audit row); the nodes holding
    # the task's jobs are told once it committed, under the id the task was created with.
    targets = tasks.cancel(call.session, call.state.cipher, task)
    task_id, request_id = task.id, task.request_id or call.request_id
    call.after_commit.append(lambda: tasks.tell_canceled(call.state, task_id, targets, request_id))
    return {"task_id": str(task_id), "canceled": True}


TOOLS = (
    McpTool(
        "task.create",
        "Create a task of the user's as a draft; nothing runs until task.ready.\n"
        "prompt: what to do (a question for the model, or a shell script with input_mode script or commands). "
        "task_name: a name, made unique among the user's tasks. input_mode: prompt (default), script or commands. "
        "use_inference: give a script access to the model (always on for prompt). use_sba: run it as a sandbox "
        "agent. project_id: one of the user's projects (default: the conversation's). attachments: paths.",
        schema.arguments(
            {
                "prompt": schema.text(PUBLISHED_MAX_PROMPT, 1),
                "task_name": schema.text(128),
                "input_mode": schema.one_of("prompt", "script", "commands"),
                "use_inference": schema.BOOLEAN,
                "use_sba": schema.BOOLEAN,
                "project_id": schema.UUID,
                "attachments": schema.array(schema.text(tasks.MAX_ATTACHMENT_LEN), 16),
            },
            "prompt",
        ),
        create,
        read_only=False,
    ),
    McpTool(
        "task.ready",
        "Make a draft task ready: its job is queued and runs.\n"
        "A task already ready is answered as it is; a canceled draft or one that has jobs is a conflict (409).",
        TASK_ID,
        ready,
        read_only=False,
    ),
    McpTool(
        "task.get",
        "One of the user's tasks: status (queued, running, completed, failed, canceled, superseded), "
        "planning_state (draft or ready), name, prompt, project.",
        TASK_ID,
        get,
    ),
    McpTool(
        "task.list",
        "The user's tasks, newest first, optionally of one status.\n"
        "limit (default 50, at most 200), offset or cursor (the next_cursor of the previous page).",
        schema.arguments({**schema.PAGE, "status": schema.one_of(*TASK_API_STATUSES), "user_id": schema.UUID}),
        list_,
    ),
    McpTool(
        "task.result",
        "A task's status and each of its jobs with its result (a JSON string: exit code, stdout, stderr).\n"
        "limit and offset select the jobs (default the first 50).",
        schema.arguments({"task_id": schema.UUID, **schema.LIMIT_OFFSET}, "task_id"),
        result,
    ),
    McpTool(
        "task.logs",
        "The standard output and error a task's jobs captured.\n"
        "stream: stdout, stderr or all (default). limit and offset select the jobs (default the first 50).",
        schema.arguments(
            {"task_id": schema.UUID, "stream": schema.one_of("stdout", "stderr", "all"), **schema.LIMIT_OFFSET},
            "task_id",
        ),
        logs,
    ),
    McpTool(
        "task.cancel",
        "Cancel a task: its queued jobs never run and a running job's container is stopped.",
        TASK_ID,
        cancel,
        read_only=False,
    ),
)
