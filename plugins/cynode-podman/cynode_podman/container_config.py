"""How a job's :class:`SandboxSpec` becomes a hardened Podman container: its options, and its creation."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from podman import PodmanClient
from podman.domain.containers import Container
from podman.errors import APIError, ImageNotFound

from cynode_core.contract import SandboxOutcome, SandboxSpec
from cynode_podman.calls import EXIT_RUNTIME_ERROR, explain, runtime_failure

LABEL_TASK_ID = "cynodeai.task_id"
LABEL_JOB_ID = "cynodeai.job_id"
LABEL_NODE = "cynodeai.node"  # the spec's owner: whose leftovers a sweep removes
WORKSPACE = "/workspace"
NAME_PREFIX = "cynode-job-"
_CPU_PERIOD = 100_000  # podman-py ignores nano_cpus; a CFS quota per period does the same
_UNSAFE_NAME = re.compile(r"[^a-zA-Z0-9_.-]")
# conmon's k8s-file log puts "<35-byte timestamp> stdout F " before each line of a job's.
K8S_LINE_OVERHEAD = 45
LOG_SIZE_FLOOR = 1024 * 1024
LOG_SIZE_CEILING = 256 * 1024 * 1024


def container_name(job_id: str) -> str:
    """The container name of a job (characters Podman refuses become ``_``)."""
    return NAME_PREFIX + _UNSAFE_NAME.sub("_", job_id)


def log_size_max(max_output_bytes: int) -> int:
    """The size cap of a job's container log, from the cap on each of its streams.

    Room for both streams' caps even as lines of one byte each (the worst
    case of the per-line overhead), within 1 MiB to 256 MiB. Podman starts a
    new log file past it; the runtime reads the first one (see ``output``).
    """
    wanted = 2 * (K8S_LINE_OVERHEAD + 1) * max(max_output_bytes, 0)
    return min(max(wanted, LOG_SIZE_FLOOR), LOG_SIZE_CEILING)


def create_options(spec: SandboxSpec) -> dict[str, Any]:
    """podman-py ``containers.create`` keyword arguments for a job: deny-all network, no privileges."""
    mounts = [{"type": "bind", "source": str(spec.workspace_dir), "target": WORKSPACE, "read_only": False}]
    mounts += [{"type": "bind", "source": m.source, "target": m.target, "read_only": m.read_only} for m in spec.mounts]
    if spec.read_only_root:
        # A private /tmp on a read-only root; its pages count against the memory limit.
        mounts.append({"type": "tmpfs", "target": "/tmp", "mode": "1777"})
    options: dict[str, Any] = {
        "name": container_name(spec.job_id),
        "labels": {
            LABEL_TASK_ID: spec.task_id,
            LABEL_JOB_ID: spec.job_id,
            **({LABEL_NODE: spec.owner} if spec.owner else {}),
        },
        "environment": dict(spec.env),
        "user": spec.user,
        # Every Phase 1 policy, known or not, is deny-all: no interface but lo.
        "network_mode": "none",
        "cap_drop": ["ALL"],
        # podman-py maps security_opt to SELinux options; this is the no-new-privileges flag.
        "no_new_privileges": True,
        "read_only": spec.read_only_root,
        "working_dir": WORKSPACE,
        "mounts": mounts,
        # Podman copies proxy variables from the service's environment otherwise.
        "use_config_proxy": False,
        # Logs are read after the exit; k8s-file keeps them regardless of journald.
        # Its size cap keeps a job that floods its output from filling the disk.
        "log_config": {"Type": "k8s-file", "Config": {"size": log_size_max(spec.max_output_bytes)}},
    }
    # None means "no limit" (SandboxSpec); without an explicit -1 Podman applies
    # its own default (2048 from containers.conf), so "no limits" would not be.
    options["pids_limit"] = spec.pids_limit if spec.pids_limit else -1
    if spec.memory_limit:
        options["mem_limit"] = spec.memory_limit
    if spec.cpus:
        options["cpu_period"] = _CPU_PERIOD
        options["cpu_quota"] = int(spec.cpus * _CPU_PERIOD)
    return options


def create_or_fail(client: PodmanClient, spec: SandboxSpec, started_at: dt.datetime) -> Container | SandboxOutcome:
    """The job's new container, or the failed outcome of a container Podman would not create."""
    try:
        return create_container(client, spec)
    except ImageNotFound as exc:
        return runtime_failure(EXIT_RUNTIME_ERROR, f"image not found: {spec.image}: {explain(exc)}", started_at)
    except APIError as exc:
        if isinstance(exc.__cause__, OSError):
            raise  # the service is unreachable: no exit code exists
        message = explain(exc)
        what = "image not found" if "image not known" in message else "cannot create the container"
        return runtime_failure(EXIT_RUNTIME_ERROR, f"{what}: {message}", started_at)


def create_container(client: PodmanClient, spec: SandboxSpec) -> Container:
    """Create the job's container, replacing a stale one of the same name.

    A stale container is left by a node that died mid-job; the orchestrator
    then sends the same job again. The runtime calls this only while no job
    of this id is inside its ``run``.
    """
    options = create_options(spec)
    command = list(spec.command) or None  # no command: the image's own (job_spec_json jobs)
    try:
        return client.containers.create(spec.image, command, **options)
    except APIError as exc:
        # Podman 4.3 answers 500 "... already in use", newer ones 409.
        if exc.status_code != 409 and "already in use" not in explain(exc):
            raise
    client.containers.remove(options["name"], force=True)
    return client.containers.create(spec.image, command, **options)
