"""The read-only tools over jobs, projects and nodes: ``job.get``, ``project.*``, ``node.*``.

A job is shown when its task is the token user's; projects are the user's
authorized set (Phase 2: their default project); nodes are shown to every
PM caller, without their Worker API token or address (mcp_contract.md 6, 7).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import or_, select

from cynode_core.contract.job import result_text
from cynode_core.orchestrator.mcp.registry import McpTool, ToolCall
from cynode_core.orchestrator.mcp.tools import schema
from cynode_core.orchestrator.mcp.tools.results import Page, invalid_arguments, to_json
from cynode_core.orchestrator.mcp.tools.scoping import (
    authorized_projects,
    not_found,
    not_yours,
    owned_job,
    uuid_argument,
)
from cynode_core.orchestrator.models import Node, Project

# What a node object shows; never the Worker API token, its URL or its override.
NODE_KEYS = (
    "id",
    "node_slug",
    "status",
    "capability_hash",
    "config_version",
    "config_ack_at",
    "config_ack_status",
    "config_ack_error",
    "last_seen_at",
    "last_capability_at",
    "created_at",
    "updated_at",
)


def _like(text: str) -> str:
    """A ``LIKE`` pattern for ``text`` anywhere, its wildcards taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def project_view(project: Project) -> dict[str, Any]:
    return to_json(
        {
            "id": project.id,
            "slug": project.slug,
            "display_name": project.display_name,
            "is_active": project.is_active,
            "created_at": project.created_at,
            "updated_at": project.updated_at,
            "description": project.description,
        }
    )


def node_view(node: Node) -> dict[str, Any]:
    return to_json({key: getattr(node, key) for key in NODE_KEYS})


def job_get(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    job = owned_job(call, arguments["job_id"])
    return to_json(
        {
            "id": job.id,
            "task_id": job.task_id,
            "status": job.status,
            "node_id": job.node_id,
            "payload": None if job.payload is None else json.dumps(job.payload),
            "result": result_text(job.result),
            "created_at": job.created_at,
            "updated_at": job.updated_at,
        }
    )


def project_list(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    query = select(Project).where(Project.id.in_(authorized_projects(call.session, call.principal.user_id)))
    wanted = (arguments.get("q") or "").strip()
    if wanted:
        pattern = _like(wanted)
        query = query.where(or_(Project.slug.ilike(pattern), Project.display_name.ilike(pattern)))
    found, next_offset = Page.of(arguments).rows(call.session, query.order_by(Project.created_at, Project.id))
    # Upstream's shape: ``next_cursor`` always present, "" on the last page.
    return {
        "projects": [project_view(p) for p in found],
        "next_cursor": "" if next_offset is None else str(next_offset),
    }


def project_get(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    project_id, slug = arguments.get("project_id"), (arguments.get("slug") or "").strip()
    if bool(project_id) == bool(slug):
        raise invalid_arguments("exactly one of project_id or slug is required")
    if project_id:
        project = call.session.get(Project, uuid_argument(project_id, "project_id"))
    else:
        project = call.session.scalar(select(Project).where(Project.slug == slug))
    if project is None:
        raise not_found()
    if project.id not in authorized_projects(call.session, call.principal.user_id):
        raise not_yours()
    call.project_id = project.id
    return project_view(project)


def node_list(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    found, next_offset = Page.of(arguments).rows(call.session, select(Node).order_by(Node.node_slug))
    out: dict[str, Any] = {"nodes": [node_view(n) for n in found]}
    if next_offset is not None:
        out["next_cursor"] = str(next_offset)
    return out


def node_get(call: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    node = call.session.scalar(select(Node).where(Node.node_slug == arguments["node_slug"]))
    if node is None:
        raise not_found()
    return node_view(node)


TOOLS = (
    McpTool(
        "job.get",
        "One job of one of the user's tasks: status, node, payload and result (both JSON strings).",
        schema.arguments({"job_id": schema.UUID}, "job_id"),
        job_get,
    ),
    McpTool(
        "project.list",
        "The projects the user may use (today: their default project).\n"
        "q: text the slug or display name contains. limit (default 50, at most 200), offset.",
        schema.arguments({"q": schema.text(100), **schema.LIMIT_OFFSET, "user_id": schema.UUID}),
        project_list,
    ),
    McpTool(
        "project.get",
        "One project the user may use, by project_id or by slug (exactly one of them).",
        schema.arguments({"project_id": schema.UUID, "slug": schema.text(200), "user_id": schema.UUID}),
        project_get,
    ),
    McpTool(
        "node.list",
        "The worker nodes: status, configuration and when they were last seen.\n"
        "limit (default 50, at most 200), offset or cursor (the next_cursor of the previous page).",
        schema.arguments(schema.PAGE),
        node_list,
    ),
    McpTool(
        "node.get",
        "One worker node by its slug: status, configuration and when it was last seen.",
        schema.arguments({"node_slug": schema.text(200, 1)}, "node_slug"),
        node_get,
    ),
)
