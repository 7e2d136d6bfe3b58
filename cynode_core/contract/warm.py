"""Warm sandboxes: a runtime capability to start a job's container before the job is known (optional).

A container start is most of a short job's latency. A runtime that offers
:class:`WarmingRuntime` lets the node start hardened containers ahead of
time from a *template* spec (the node's image, user, limits and a fresh
workspace of its own, no command yet), each waiting for exactly one job;
when a job arrives whose spec has the template's :func:`warm_key`, the node
hands it to one of them with ``run_warm`` instead of ``run``, and the
container is removed after that job like any other. Isolation is the same
as a cold start's: a warm container is created with every flag ``run``
would use and never serves a second job (docs/plugins.md#warm-sandboxes).

What a job can change and still fit a warm container: its command, its
environment and its ids. What it cannot: anything the container is created
with (image, user, limits, root file system, network, mounts, log size).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cynode_core.contract.values import SandboxOutcome, SandboxRuntime, SandboxSpec

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class WarmKey:
    """What a container is created with, beyond its workspace: two specs with one key fit one warm container."""

    image: str
    user: str
    memory_limit: str | None
    pids_limit: int | None
    cpus: float | None
    read_only_root: bool
    network_policy: str
    max_output_bytes: int
    owner: str


@dataclass(frozen=True)
class WarmSandbox:
    """A started container waiting for one job: the runtime's reference, its key and its workspace."""

    ref: str
    key: WarmKey
    workspace_dir: str


class WarmStartFailed(Exception):
    """The warm container could not take the job, which has not started: run it cold (the container is gone)."""


def warm_key(spec: SandboxSpec) -> WarmKey | None:
    """The key of the warm containers ``spec`` fits, or None when it needs a cold start.

    A spec with mounts (an inference or MCP proxy, an agent's ``/job``), without a command (the image's own),
    or with an environment name that is not a portable identifier, or a NUL anywhere, is never warm.
    """
    if spec.mounts or not spec.command:
        return None
    texts = [*spec.command, *spec.env.values()]
    if any("\x00" in text for text in texts) or not all(_ENV_NAME.fullmatch(name) for name in spec.env):
        return None
    return WarmKey(
        image=spec.image,
        user=spec.user,
        memory_limit=spec.memory_limit,
        pids_limit=spec.pids_limit,
        cpus=spec.cpus,
        read_only_root=spec.read_only_root,
        network_policy=spec.network_policy,
        max_output_bytes=spec.max_output_bytes,
        owner=spec.owner,
    )


@runtime_checkable
class WarmingRuntime(SandboxRuntime, Protocol):
    """A sandbox runtime that can start a container before its job is known (docs/plugins.md#warm-sandboxes)."""

    def prestart(self, template: SandboxSpec) -> WarmSandbox:
        """Create and start a container for ``template`` (its command ignored) that waits for one job.

        The container mounts ``template.workspace_dir`` at ``/workspace`` and carries ``template.owner``
        (a sweep finds it). Raise ``RuntimeUnavailable`` when it cannot be made (the node then runs cold).
        """

    def run_warm(self, sandbox: WarmSandbox, spec: SandboxSpec) -> SandboxOutcome:
        """Run ``spec`` (whose ``warm_key`` is ``sandbox.key``, whose workspace is the sandbox's) as ``run`` would.

        Raise ``WarmStartFailed`` if the container cannot take the job before the job started (it exited
        while waiting, say); the container is then removed and the caller runs ``spec`` cold.
        """

    def discard(self, sandbox: WarmSandbox) -> None:
        """Remove a warm container that will get no job. Never raises."""
