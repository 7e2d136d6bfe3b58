"""Warm containers for ``PodmanRuntime`` (cynode_core.contract.warm): started ahead, each waiting for one job.

A warm container is created from the node's template spec with every flag
a cold one gets (``container_config.create_options``: no network, the
sandbox user, no capabilities, read-only root, limits, capped log, its own
workspace) and started with a POSIX shell as its process. The shell blocks
reading a named pipe in its workspace. When a job comes, the runtime writes
the job's command and environment as a shell script next to the pipe,
renames the container to the job's name (``cancel`` finds it as a cold
one), and writes one line to the pipe: the shell deletes the pipe, reads
the script (which deletes itself) and ``exec`` s the job's command, which
becomes the container's process with the image's environment and the
job's. From there the job is watched exactly as a cold one (``runtime``).

An image with its own entrypoint cannot be started this way (its command
is not replaceable) and one without ``/bin/sh`` does not start: ``prestart``
raises ``RuntimeUnavailable`` and the node runs such jobs cold.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import time
import uuid
from pathlib import Path

from podman import PodmanClient
from podman.domain.containers import Container
from podman.errors import APIError, ImageNotFound

from cynode_core.contract import RuntimeUnavailable, SandboxSpec, WarmSandbox, WarmStartFailed, warm_key
from cynode_podman.calls import explain, kill, remove
from cynode_podman.container_config import (
    LABEL_JOB_ID,
    LABEL_TASK_ID,
    NAME_PREFIX,
    WORKSPACE,
    container_name,
    create_options,
)

_log = logging.getLogger("cynode_podman.runtime")

LABEL_WARM = "cynodeai.warm"  # a container started before its job; its job labels are empty
WARM_NAME_PREFIX = "cynode-warm-"
GO_PIPE = ".cynode-go"
JOB_SCRIPT = ".cynode-job.sh"
READER_WAIT_SECONDS = 2.0  # how long a container just started may take to reach its read
LAUNCHER = f"read -r _ < {WORKSPACE}/{GO_PIPE} || exit 125; rm -f {WORKSPACE}/{GO_PIPE}; . {WORKSPACE}/{JOB_SCRIPT}"


def start_warm(client: PodmanClient, template: SandboxSpec) -> tuple[WarmSandbox, Container]:
    """Create and start a container for ``template`` that waits on its pipe; ``RuntimeUnavailable`` if not.

    The container comes with an inspect of it started (its process id and log file), so a job need not ask.
    """
    key = warm_key(dataclasses.replace(template, command=("true",), env={}))
    if key is None:
        raise RuntimeUnavailable("a template with mounts cannot make warm containers")
    _check_image(client, template.image)
    workspace = Path(template.workspace_dir)
    pipe = workspace / GO_PIPE
    pipe.unlink(missing_ok=True)
    os.mkfifo(pipe)
    pipe.chmod(0o644)  # the sandbox user reads it; only the node writes it
    options = create_options(dataclasses.replace(template, job_id="", task_id="", env={}))
    options["name"] = WARM_NAME_PREFIX + uuid.uuid4().hex
    options["labels"] |= {LABEL_WARM: "1", LABEL_JOB_ID: "", LABEL_TASK_ID: ""}
    container: Container | None = None
    try:
        container = client.containers.create(template.image, ["/bin/sh", "-c", LAUNCHER], **options)
        container.init()
        container.start()
        container.reload()
    except APIError as exc:
        if container is not None:
            remove(container)
        raise RuntimeUnavailable(f"cannot start a warm container of {template.image}: {explain(exc)}") from exc
    return WarmSandbox(ref=str(container.id), key=key, workspace_dir=str(workspace)), container


def claim(client: PodmanClient, sandbox: WarmSandbox, spec: SandboxSpec, known: Container | None) -> Container:
    """The warm container (``known``, else asked of Podman), with ``spec``'s script beside its pipe.

    The job has not started yet. :raises WarmStartFailed: the container is gone (the caller runs the job cold).
    """
    if warm_key(spec) != sandbox.key or spec.workspace_dir != sandbox.workspace_dir:
        raise ValueError(f"job {spec.job_id} does not fit warm container {sandbox.ref}")
    script = Path(sandbox.workspace_dir) / JOB_SCRIPT
    written = script.with_name(JOB_SCRIPT + ".new")
    written.write_text(job_script(spec), encoding="utf-8")
    written.chmod(0o644)
    written.replace(script)
    if known is not None:
        return known
    try:
        return client.containers.get(sandbox.ref)
    except APIError as exc:
        clear(sandbox)
        raise WarmStartFailed(f"warm container {sandbox.ref} is gone: {explain(exc)}") from exc


def take_name(client: PodmanClient, container: Container, job_id: str) -> None:
    """Give a warm container that took a job the job's name (``cancel`` and a sweep find it by it).

    Done once the job started: the job does not wait for it. A stale container of that name (a node that
    died mid-job) is removed first. A failure is logged; the runtime still knows the container by the job.
    """
    name = container_name(job_id)
    try:
        try:
            container.rename(name)
        except APIError as exc:
            if exc.status_code != 409 and "already in use" not in explain(exc):
                raise
            client.containers.remove(name, force=True)
            container.rename(name)
    except APIError as exc:
        _log.warning("job %s: its warm container keeps its own name: %s", job_id, explain(exc))


def go(sandbox: WarmSandbox) -> None:
    """Let the waiting shell run the job; ``WarmStartFailed`` when nothing waits on the pipe.

    A container started a moment ago may not have reached its ``read`` yet: the pipe is tried again for up
    to ``READER_WAIT_SECONDS`` before the container counts as gone.
    """
    pipe = Path(sandbox.workspace_dir) / GO_PIPE
    deadline = time.monotonic() + READER_WAIT_SECONDS
    while True:
        try:
            fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno == errno.ENXIO and time.monotonic() < deadline:
                time.sleep(0.002)
                continue
            clear(sandbox)
            why = "it is not waiting" if exc.errno == errno.ENXIO else str(exc)
            raise WarmStartFailed(f"warm container {sandbox.ref} cannot take the job: {why}") from exc
    try:
        os.write(fd, b"go\n")
    finally:
        os.close(fd)


def clear(sandbox: WarmSandbox) -> None:
    """Remove the pipe and the job script from the workspace (a job started cold there must not see them)."""
    for name in (GO_PIPE, JOB_SCRIPT, JOB_SCRIPT + ".new"):
        try:
            (Path(sandbox.workspace_dir) / name).unlink(missing_ok=True)
        except OSError:
            pass


def job_script(spec: SandboxSpec) -> str:
    """The shell lines that give the job its environment and replace the shell with its command."""
    lines = [f"rm -f {WORKSPACE}/{JOB_SCRIPT}"]
    lines += [f"export {name}={_quote(value)}" for name, value in spec.env.items()]
    lines.append("exec " + " ".join(_quote(arg) for arg in spec.command))
    return "\n".join(lines) + "\n"


def discard(client: PodmanClient, sandbox: WarmSandbox) -> None:
    """Remove a warm container and its pipe; never raises."""
    try:
        container = client.containers.get(sandbox.ref)
    except APIError:
        container = None
    if container is not None:
        kill(container)  # the waiting shell is PID 1: it ignores the SIGTERM a removal would wait out
        remove(container)
    clear(sandbox)


def claimed_job(labels: dict[str, str], name: str) -> str:
    """The job a warm container took, from the name ``claim`` gave it ('' for one still waiting)."""
    if labels.get(LABEL_WARM) and name.startswith(NAME_PREFIX):
        return name.removeprefix(NAME_PREFIX)
    return ""


def _check_image(client: PodmanClient, image: str) -> None:
    try:
        config = client.images.get(image).attrs.get("Config") or {}
    except ImageNotFound as exc:
        raise RuntimeUnavailable(f"image not found: {image}") from exc
    except APIError as exc:
        raise RuntimeUnavailable(f"cannot inspect {image}: {explain(exc)}") from exc
    if config.get("Entrypoint"):
        raise RuntimeUnavailable(f"{image} has an entrypoint: its jobs start cold")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
