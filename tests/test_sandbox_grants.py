"""A sandbox agent job's MCP grant on the control plane (mcp_contract.md 2.3, 3.2): minted, bound, revoked.

``dispatch.sandbox_grant.with_mcp_grant`` on a claimed job of alice's task,
in the app on a real PostgreSQL; the token's effect is checked on the MCP
gateway itself (``POST /mcp`` ``ping``). The whole path through a node is
tests/e2e/test_sba_mcp.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import pytest
from harness.api import ApiClient
from harness.mcp import gateway_world, rpc
from harness.orchestrator import OrchestratorUnderTest, rows
from sqlalchemy import text

from cynode_core.contract.job import RunJobRequest, SandboxRequest, TaskStatus
from cynode_core.orchestrator.dispatch.claimed_job import ClaimedJob
from cynode_core.orchestrator.dispatch.sandbox_grant import GRANT_SLACK_SECONDS, with_mcp_grant
from cynode_core.orchestrator.dispatch.store import finish_task, requeue
from cynode_core.orchestrator.node_client import NodeEndpoint


@pytest.fixture
def world(orchestrator: OrchestratorUnderTest, api: ApiClient) -> dict[str, Any]:
    return gateway_world(orchestrator, api)


def claimed(world: dict[str, Any], *, sba: bool = True, timeout: int = 300) -> ClaimedJob:
    sandbox = (
        SandboxRequest(job_spec_json='{"protocol_version": "1.0"}', timeout_seconds=timeout)
        if sba
        else (SandboxRequest(command=("true",)))
    )
    return ClaimedJob(
        request=RunJobRequest(task_id=world["task"], job_id=world["job"], sandbox=sandbox),
        lease_id=uuid.uuid4(),
        attempts=1,
        node_id=uuid.uuid4(),
        node=NodeEndpoint("http://127.0.0.1:9", "node-token"),
    )


def hold(orchestrator: OrchestratorUnderTest, job: ClaimedJob) -> None:
    """The job's row as a dispatcher holds it: running under ``job``'s lease."""
    with orchestrator.db.session() as session:
        session.execute(
            text("UPDATE jobs SET status = 'running', lease_id = :l WHERE id = :j"),
            {"l": job.lease_id, "j": job.job_id},
        )


def works(api: ApiClient, token: str) -> bool:
    return bool(rpc(api, token, "ping").status_code == 200)


def grant_rows(orchestrator: OrchestratorUnderTest, world: dict[str, Any]) -> list[Any]:
    return rows(orchestrator.db, "SELECT * FROM agent_tokens WHERE job_id = :j ORDER BY created_at", j=world["job"])


def test_an_sba_job_is_sent_with_a_sandbox_token_bound_to_its_user_task_and_job(
    orchestrator: OrchestratorUnderTest, api: ApiClient, world: dict[str, Any]
) -> None:
    job = with_mcp_grant(orchestrator.db, orchestrator.settings, claimed(world, timeout=300))
    assert job.request.mcp is not None and job.request.to_json()["mcp"]["agent_token"].startswith("cyat_")
    assert with_mcp_grant(orchestrator.db, orchestrator.settings, job) is job  # one grant per hand-over
    [row] = grant_rows(orchestrator, world)
    assert (row["role"], str(row["user_id"]), str(row["task_id"])) == ("sandbox", world["alice"], world["task"])
    assert (row["issued_by"], row["revoked_at"], row["project_id"] is not None) == ("dispatcher", None, True)
    lifetime = (row["expires_at"] - row["created_at"]).total_seconds()
    assert abs(lifetime - (300 + GRANT_SLACK_SECONDS)) < 5
    expires = dt.datetime.fromisoformat(job.request.mcp.expires_at.replace("Z", "+00:00"))
    assert abs((expires - row["expires_at"]).total_seconds()) < 1
    assert works(api, job.request.mcp.agent_token)


def test_a_plain_job_gets_no_grant(orchestrator: OrchestratorUnderTest, world: dict[str, Any]) -> None:
    job = claimed(world, sba=False)
    assert with_mcp_grant(orchestrator.db, orchestrator.settings, job) is job
    assert grant_rows(orchestrator, world) == []


def test_the_grant_dies_when_the_task_ends_is_canceled_or_the_job_goes_back(
    orchestrator: OrchestratorUnderTest, api: ApiClient, world: dict[str, Any]
) -> None:
    # Back to the queue: the next hand-over mints its own.
    first = with_mcp_grant(orchestrator.db, orchestrator.settings, claimed(world))
    lost = dataclasses.replace(first, lease_id=uuid.uuid4())
    requeue(orchestrator.db, lost, delay=0, count_attempt=False, error="node busy")
    assert first.request.mcp is not None and works(api, first.request.mcp.agent_token)  # not its lease: kept
    hold(orchestrator, first)
    requeue(orchestrator.db, first, delay=0, count_attempt=False, error="node busy")
    assert first.request.mcp is not None and not works(api, first.request.mcp.agent_token)
    # The end of the task, on every path that ends it (store_result, fail_job, recovery all call finish_task).
    second = with_mcp_grant(orchestrator.db, orchestrator.settings, claimed(world))
    assert second.request.mcp is not None and works(api, second.request.mcp.agent_token)
    with orchestrator.db.session() as session:
        finish_task(session, world["task"], TaskStatus.COMPLETED)
    assert not works(api, second.request.mcp.agent_token)
    reasons = [(r["revoked_reason"], r["revoked_at"] is not None) for r in grant_rows(orchestrator, world)]
    assert reasons == [("job_requeued", True), ("job_ended", True)]


def test_a_cancel_revokes_the_grant(orchestrator: OrchestratorUnderTest, api: ApiClient, world: dict[str, Any]) -> None:
    job = with_mcp_grant(orchestrator.db, orchestrator.settings, claimed(world))
    assert job.request.mcp is not None and works(api, job.request.mcp.agent_token)
    alice = world["alice_api"]
    canceled = alice.post(f"/v1/tasks/{world['task']}/cancel", token=alice.token)
    assert canceled.status_code == 200, canceled.text
    assert not works(api, job.request.mcp.agent_token)
    assert [r["revoked_reason"] for r in grant_rows(orchestrator, world)] == ["task_canceled"]
