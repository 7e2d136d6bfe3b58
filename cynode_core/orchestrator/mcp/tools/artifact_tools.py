"""The artifact tools: ``artifact.put``, ``artifact.get``, ``artifact.list`` (mcp_contract.md 6, 7).

They act as the token's user, never as an administrator, through the same
service and rules as ``/v1/artifacts`` (artifacts_contract.md 4). Content
travels base64-encoded, at most 4 MiB decoded (413 ``too_large``). A
sandbox token reaches only its task's project and its user's own files,
and what it writes records its job. ``artifact.put`` creates or replaces
(by scope and path); its blob and row are written by the artifact service
in transactions of their own, before the call's audit row.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from sqlalchemy import select

from cynode_core.contract.errors import CynodeError, NotFound
from cynode_core.orchestrator.mcp.registry import McpTool, ToolCall, ToolFailed
from cynode_core.orchestrator.mcp.tools import schema
from cynode_core.orchestrator.mcp.tools.results import invalid_arguments, service_errors, to_json
from cynode_core.orchestrator.mcp.tools.scoping import owned_job, owned_task, uuid_argument
from cynode_core.orchestrator.models import Task
from cynode_core.orchestrator.models.artifacts import SCOPE_LEVELS
from cynode_core.orchestrator.services.artifact_access import Actor, Scope, clean_path, make_scope, may_list, may_read
from cynode_core.orchestrator.services.artifacts import NOT_FOUND, Artifacts, Lineage, ListFilters, Upload, at_path

MAX_CONTENT_BYTES = 4 * 1024 * 1024
_ENCODED_MAX = (MAX_CONTENT_BYTES + 2) // 3 * 4

_SCOPE_ARGS = {
    "scope": schema.one_of(*SCOPE_LEVELS),
    "path": schema.text(1024, 1),
    "user_id": schema.UUID,
    "project_id": schema.UUID,
    "group_id": schema.UUID,
}


def _service(call: ToolCall) -> Artifacts:
    service: Artifacts = call.state.artifacts
    return service


def _scope(call: ToolCall, arguments: dict[str, Any]) -> Scope:
    actor = Actor(call.principal.user_id)
    ids = {name: uuid_argument(arguments[name], name) for name in ("project_id", "group_id") if arguments.get(name)}
    with service_errors():
        scope = make_scope(arguments.get("scope"), actor, **ids)
    principal = call.principal
    if principal.role == "sandbox":
        task_project = call.session.scalar(select(Task.project_id).where(Task.id == principal.task_id))
        allowed = (scope.level == "user" and scope.owner_user_id == principal.user_id) or (
            scope.level == "project" and scope.project_id == task_project
        )
        if not allowed:
            raise ToolFailed(403, "scope_mismatch", "a sandbox reaches only its task's project and its user's files")
    return scope


def _path(arguments: dict[str, Any]) -> str:
    with service_errors():
        return clean_path(arguments.get("path"))


def put(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    scope, path = _scope(call, arguments), _path(arguments)
    try:
        content = base64.b64decode(arguments["content_bytes_base64"], validate=True)
    except (binascii.Error, ValueError):
        raise invalid_arguments("content_bytes_base64 is not base64") from None
    if len(content) > MAX_CONTENT_BYTES:
        raise ToolFailed(413, "too_large", f"content is larger than {MAX_CONTENT_BYTES} bytes")
    principal, actor = call.principal, Actor(call.principal.user_id)
    if principal.role == "sandbox":
        job_id = principal.job_id  # what a sandbox writes records its own job
    else:
        job_id = owned_job(call, arguments["job_id"]).id if arguments.get("job_id") else None
    task_id = owned_task(call, arguments["task_id"]).id if arguments.get("task_id") else None
    upload = Upload(io.BytesIO(content), arguments.get("content_type"))
    present = at_path(call.session, scope, path)
    with service_errors():
        if present is not None:
            row = _service(call).replace(actor, present.id, upload, job_id)
        else:
            row = _service(call).create(actor, scope, path, upload, Lineage(job_id=job_id, task_id=task_id))
    call.project_id = row.project_id
    return to_json(
        {
            "status": "success",
            "artifact_id": row.id,
            "path": row.path,
            "scope_level": row.scope_level,
            "size_bytes": row.size_bytes,
            "content_type": row.content_type,
        }
    )


def get(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    scope, path = _scope(call, arguments), _path(arguments)
    row = at_path(call.session, scope, path)
    if row is None or not may_read(call.session, Actor(call.principal.user_id), row):
        raise ToolFailed(404, "not_found", NOT_FOUND)
    if row.size_bytes > MAX_CONTENT_BYTES:
        raise ToolFailed(
            413, "too_large", f"the artifact is larger than {MAX_CONTENT_BYTES} bytes; download it instead"
        )
    try:
        content = b"".join(_service(call).content(row))
    except NotFound as exc:
        raise ToolFailed(404, "not_found", NOT_FOUND) from exc
    except CynodeError as exc:
        raise ToolFailed(503, "service_unavailable", "the blob store cannot be used now") from exc
    call.project_id = row.project_id
    return to_json(
        {
            "status": "success",
            "artifact_id": row.id,
            "path": row.path,
            "content_bytes_base64": base64.b64encode(content).decode("ascii"),
            "content_type": row.content_type,
            "size_bytes": row.size_bytes,
            "checksum_sha256": row.checksum_sha256,
        }
    )


def list_(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    scope = _scope(call, arguments)
    if not may_list(call.session, Actor(call.principal.user_id), scope):
        raise ToolFailed(403, "forbidden", "access denied")
    task_id = uuid_argument(arguments["task_id"], "task_id") if arguments.get("task_id") else None
    filters = ListFilters(task_id=task_id, limit=int(arguments.get("limit") or 100))
    rows = _service(call).list(call.session, scope, filters)
    return to_json(
        {
            "status": "success",
            "artifacts": [
                {"artifact_id": r.id, "path": r.path, "size_bytes": r.size_bytes, "created_at": r.created_at}
                for r in rows
            ],
        }
    )


TOOLS = (
    McpTool(
        "artifact.put",
        "Store a file (base64, at most 4 MiB) at a path of a scope; an existing one at that path is replaced.",
        schema.arguments(
            {
                **_SCOPE_ARGS,
                "content_bytes_base64": schema.text(_ENCODED_MAX),
                "content_type": schema.text(200),
                "job_id": schema.UUID,
                "task_id": schema.UUID,
            },
            "scope",
            "path",
            "content_bytes_base64",
        ),
        put,
        read_only=False,
    ),
    McpTool(
        "artifact.get",
        "Read a stored file (base64, at most 4 MiB) by scope and path, with its type and SHA-256.",
        schema.arguments({**_SCOPE_ARGS, "task_id": schema.UUID}, "scope", "path"),
        get,
        scope="both",
    ),
    McpTool(
        "artifact.list",
        "List the stored files of a scope, newest first; task_id narrows to one task's files.",
        schema.arguments(
            {
                "scope": schema.one_of(*SCOPE_LEVELS),
                "user_id": schema.UUID,
                "project_id": schema.UUID,
                "group_id": schema.UUID,
                "limit": schema.integer(1, 200),
                "task_id": schema.UUID,
            },
            "scope",
        ),
        list_,
    ),
)
