"""A sandbox agent's MCP credential: minted when its job is sent, revoked when its task ends (mcp_contract.md 2.3, 3.2).

An SBA job (its payload has a ``job_spec_json``) is sent to its node with a
top-level ``mcp`` grant: a ``sandbox`` agent token bound to the task's
creator, project, task and job, issued by ``dispatcher``, valid for the
job's timeout plus 120 s. The node keeps it out of the sandbox and adds it
to the calls the sandbox makes through its per-job MCP socket. The token is
revoked when the task becomes terminal (``job_grants.revoke_task_grants``
from ``store.finish_task``) or is canceled, and when the job goes back to the
queue (its next hand-over gets a new one).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from cynode_core.contract.job import McpGrant
from cynode_core.orchestrator.db import Database
from cynode_core.orchestrator.dispatch.claimed_job import ClaimedJob
from cynode_core.orchestrator.models import Task
from cynode_core.orchestrator.services import agent_tokens, job_grants
from cynode_core.orchestrator.settings import OrchestratorSettings

# The token outlives the job's own timeout by this much (mcp_contract.md 3.2).
GRANT_SLACK_SECONDS = 120


def with_mcp_grant(db: Database, settings: OrchestratorSettings, job: ClaimedJob) -> ClaimedJob:
    """``job`` with a fresh sandbox token in its request when it is an SBA job of a user's task; else unchanged."""
    request = job.request
    if not request.sandbox.job_spec_json or request.mcp is not None:
        return job
    with db.session() as session:
        task = session.get(Task, job.task_id)
        if task is None or task.created_by is None:
            return job  # no user to act for: the job runs without tools
        lifetime = (request.sandbox.timeout_seconds or settings.job_timeout_seconds) + GRANT_SLACK_SECONDS
        minted = agent_tokens.mint(
            session,
            role="sandbox",
            user_id=task.created_by,
            lifetime_seconds=lifetime,
            issued_by=job_grants.DISPATCHER_ISSUER,
            binding=agent_tokens.Binding(project_id=task.project_id, task_id=task.id, job_id=job.job_id),
        )
        expires = minted.row.expires_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    grant = McpGrant(agent_token=minted.token, expires_at=expires)
    return dataclasses.replace(job, request=dataclasses.replace(request, mcp=grant))
