"""What a job's container is made of: the ``SandboxSpec`` the runtime gets for a ``RunJobRequest``.

The node resolves everything here, so a runtime decides nothing about
isolation: the image (aliases applied), the environment
(docs/wire_contract.md#sandbox-env), the user and limits
(docs/wire_contract.md#sandbox-hardening) and a network policy that is
always ``none`` (docs/wire_contract.md#sandbox).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cynode_core.contract import ExitSink, Mount, OutputSink, SandboxSpec
from cynode_core.contract.job import RunJobRequest
from node_agent.sba_job import SbaJob
from node_agent.settings import NodeSettings
from node_agent.unix_proxy import SANDBOX_SOCKET_DIR, UnixProxy

# The unprivileged identity every job runs as (docs/wire_contract.md#sandbox-hardening).
SANDBOX_UID = 65534
SANDBOX_GID = 65534
WORKSPACE_MOUNT = "/workspace"
# Where a job leaves files that come back (node_agent.job_files): an SBA job in its /job, any other in its
# own workspace, so it has no host mount besides the workspace (docs/decisions.md Artifacts 5).
OUTPUTS_ENV = "CYNODE_ARTIFACTS_DIR"
SBA_OUTPUTS = "/job/artifacts"
OUTPUTS_IN_WORKSPACE = ".cynode/artifacts"
RESERVED_ENV = ("CYNODE_TASK_ID", "CYNODE_JOB_ID", "CYNODE_WORKSPACE_DIR")


def build_sandbox_env(request: RunJobRequest) -> dict[str, str]:
    """The container environment: the node's ``CYNODE_*`` first, then the request's.

    The request cannot override the three reserved names (they are dropped
    without a word, see docs/wire_contract.md#sandbox-env); nothing of the
    agent's own environment is added.
    """
    env = {
        "CYNODE_TASK_ID": request.task_id,
        "CYNODE_JOB_ID": request.job_id,
        "CYNODE_WORKSPACE_DIR": WORKSPACE_MOUNT,
    }
    for name, value in request.sandbox.env.items():
        if name not in RESERVED_ENV:
            env[name] = value
    return env


def sandbox_owner(settings: NodeSettings) -> str:
    """The mark on this node's containers: its state directory, absolute, unique to one node on a host.

    The node's restart sweeps what carries it (``node_agent.recovery``);
    nodes sharing one container service never sweep each other's jobs.
    """
    return str(settings.resolved_state_dir.resolve())


def build_sandbox_spec(
    request: RunJobRequest,
    settings: NodeSettings,
    *,
    workspace: Path,
    timeout: int,
    proxies: Sequence[UnixProxy] = (),
    on_output: OutputSink | None = None,
    on_exit: ExitSink | None = None,
    sba: SbaJob | None = None,
) -> SandboxSpec:
    """The spec of one run; ``proxies`` are the job's proxies (inference, MCP), which share one socket directory.

    ``on_output`` takes the job's output as it is printed, ``on_exit`` its outcome once the container
    exited (a job handed over with ``jobs:start``). An SBA job (``sba``) runs the agent runner with its
    ``/job`` directory and the runner mounted (``node_agent.sba_job``). Every job is told where to leave
    files that come back (``node_agent.job_files``).
    """
    env = build_sandbox_env(request)
    mounts: list[Mount] = []
    if proxies:
        # Only the sockets' own directory, read-only; /run itself is a tmpfs under --read-only.
        mounts.append(Mount(source=str(proxies[0].socket_dir), target=SANDBOX_SOCKET_DIR, read_only=True))
        for proxy in proxies:
            env[proxy.sandbox_env] = proxy.sandbox_url
    if sba is not None:
        mounts.extend(sba.mounts)
    env[OUTPUTS_ENV] = SBA_OUTPUTS if sba is not None else f"{WORKSPACE_MOUNT}/{OUTPUTS_IN_WORKSPACE}"
    return SandboxSpec(
        job_id=request.job_key,
        task_id=request.task_id,
        image=settings.resolve_image(request.sandbox.image),
        command=sba.command if sba is not None else list(request.sandbox.command),
        env=env,
        workspace_dir=str(workspace),
        timeout_seconds=timeout,
        mounts=tuple(mounts),
        on_output=on_output,
        on_exit=on_exit,
        **_hardening(settings),
    )


def warm_template(settings: NodeSettings, workspace: Path, key: str) -> SandboxSpec:
    """The spec a warm container is made from: a job of the default image, its command and environment to come."""
    return SandboxSpec(
        job_id=key,
        task_id="",
        image=settings.resolve_image(None),
        command=(),
        env={},
        workspace_dir=str(workspace),
        timeout_seconds=settings.default_timeout_seconds,
        **_hardening(settings),
    )


def _hardening(settings: NodeSettings) -> dict[str, Any]:
    """What every job's container is made with, beyond its image (docs/wire_contract.md#sandbox-hardening)."""
    return {
        "max_output_bytes": settings.max_output_bytes,
        # Every policy value means deny-all (docs/wire_contract.md#sandbox);
        # normalising here keeps a runtime from honouring anything else.
        "network_policy": "none",
        "user": f"{SANDBOX_UID}:{SANDBOX_GID}",
        "memory_limit": settings.sandbox_memory,
        "pids_limit": settings.sandbox_pids if settings.sandbox_pids > 0 else None,
        "cpus": settings.sandbox_cpus,
        "read_only_root": True,
        "owner": sandbox_owner(settings),
    }
