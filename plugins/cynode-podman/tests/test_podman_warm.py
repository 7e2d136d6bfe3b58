"""Warm containers of ``PodmanRuntime`` as Podman records them: hardened while they wait, one job each, swept.

The contract cases on the warm path are in test_contract.py (``TestPodmanWarmContract``).
"""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cynode_podman.runtime import PodmanRuntime
from cynode_podman.warm import GO_PIPE, JOB_SCRIPT, LABEL_WARM

from cynode_core.contract import RuntimeUnavailable, SandboxOutcome, SandboxSpec, WarmStartFailed, warm_key

SpecFactory = Callable[..., SandboxSpec]


def template_of(spec: SandboxSpec) -> SandboxSpec:
    return dataclasses.replace(spec, job_id=f"warm-{uuid.uuid4()}", task_id="", command=(), env={})


def warm_containers(runtime: PodmanRuntime, owner: str) -> list[str]:
    found = runtime.client.containers.list(all=True, filters={"label": f"cynodeai.node={owner}"})
    return [c.name for c in found if (c.labels or {}).get(LABEL_WARM)]


def test_a_warm_container_waits_hardened_and_runs_one_job(
    podman_runtime: PodmanRuntime, sandbox_spec_factory: SpecFactory
) -> None:
    owner = f"warm-node-{uuid.uuid4()}"
    spec = sandbox_spec_factory(["sh", "-c", 'id -u; ls -A /workspace; echo "$GREETING"'], owner=owner)
    spec = dataclasses.replace(spec, env={**spec.env, "GREETING": 'it\'s "quoted" $HOME `x`'}, memory_limit="256m")
    sandbox = podman_runtime.prestart(template_of(spec))
    assert sandbox.key == warm_key(spec)
    attrs = podman_runtime.client.containers.get(sandbox.ref).attrs
    host = attrs["HostConfig"]
    assert attrs["State"]["Status"] == "running" and attrs["Config"]["User"] == "65534:65534"
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True and host["Memory"] == 256 * 1024 * 1024
    assert not host["CapAdd"] and host["Privileged"] is False and "no-new-privileges" in host["SecurityOpt"]
    binds = [m for m in attrs["Mounts"] if m["Type"] == "bind"]
    assert [(m["Source"], m["Destination"]) for m in binds] == [(spec.workspace_dir, "/workspace")]
    assert attrs["Config"]["Labels"]["cynodeai.node"] == owner and attrs["Name"].startswith("cynode-warm-")

    outcome = podman_runtime.run_warm(sandbox, spec)
    assert outcome.status == "completed", outcome.stderr
    # ls -A printed nothing: the pipe and the job's script were gone before the command ran.
    assert outcome.stdout.decode() == '65534\nit\'s "quoted" $HOME `x`\n'
    assert warm_containers(podman_runtime, owner) == []
    assert not (Path(spec.workspace_dir) / GO_PIPE).exists() and not (Path(spec.workspace_dir) / JOB_SCRIPT).exists()


def test_a_warm_container_that_died_is_a_warm_start_failure_and_is_removed(
    podman_runtime: PodmanRuntime, sandbox_spec_factory: SpecFactory
) -> None:
    owner = f"warm-node-{uuid.uuid4()}"
    spec = sandbox_spec_factory(["true"], owner=owner)
    sandbox = podman_runtime.prestart(template_of(spec))
    container = podman_runtime.client.containers.get(sandbox.ref)
    container.kill(signal="SIGKILL")
    container.wait()
    with pytest.raises(WarmStartFailed):
        podman_runtime.run_warm(sandbox, spec)
    assert warm_containers(podman_runtime, owner) == []
    assert podman_runtime.run(spec).status == "completed"  # the cold start the node falls back to


def test_discard_removes_a_waiting_container(podman_runtime: PodmanRuntime, sandbox_spec_factory: SpecFactory) -> None:
    owner = f"warm-node-{uuid.uuid4()}"
    spec = sandbox_spec_factory(["true"], owner=owner)
    sandbox = podman_runtime.prestart(template_of(spec))
    assert len(warm_containers(podman_runtime, owner)) == 1
    podman_runtime.discard(sandbox)
    podman_runtime.discard(sandbox)  # twice: nothing to do, no error
    assert warm_containers(podman_runtime, owner) == []
    assert not (Path(spec.workspace_dir) / GO_PIPE).exists()


def test_sweep_removes_waiting_and_busy_warm_containers_and_names_only_the_busy_job(
    podman_runtime: PodmanRuntime, sandbox_spec_factory: SpecFactory
) -> None:
    owner = f"warm-node-{uuid.uuid4()}"
    waiting_spec = sandbox_spec_factory(["true"], owner=owner)
    podman_runtime.prestart(template_of(waiting_spec))
    busy = sandbox_spec_factory(["sleep", "600"], owner=owner, timeout_seconds=120)
    sandbox = podman_runtime.prestart(template_of(busy))
    outcomes: list[SandboxOutcome] = []
    worker = threading.Thread(target=lambda: outcomes.append(podman_runtime.run_warm(sandbox, busy)))
    worker.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not podman_runtime.client.containers.list(
        filters={"name": f"^cynode-job-{busy.job_id}$"}
    ):
        time.sleep(0.05)
    time.sleep(0.3)
    swept = podman_runtime.sweep(owner)
    worker.join(15)
    assert [job.job_id for job in swept] == [busy.job_id]
    assert outcomes and outcomes[0].status == "failed"
    assert warm_containers(podman_runtime, owner) == []


@pytest.fixture(scope="module")
def entrypoint_image(
    podman_env: dict[str, str], sandbox_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The sandbox image with an entrypoint of its own, built locally (no registry)."""
    name = f"localhost/cynode-test-entrypoint:{uuid.uuid4().hex[:8]}"
    context = tmp_path_factory.mktemp("entrypoint-image")
    (context / "Containerfile").write_text(f'FROM {sandbox_image}\nENTRYPOINT ["/bin/echo"]\n')
    subprocess.run(["podman", "build", "-q", "-t", name, str(context)], env=podman_env, check=True, capture_output=True)
    yield name
    subprocess.run(["podman", "rmi", "-f", name], env=podman_env, check=False, capture_output=True)


def test_an_image_with_an_entrypoint_has_no_warm_containers(
    podman_runtime: PodmanRuntime, sandbox_spec_factory: SpecFactory, entrypoint_image: str
) -> None:
    spec = sandbox_spec_factory(["hello"], image=entrypoint_image)
    with pytest.raises(RuntimeUnavailable, match="entrypoint"):
        podman_runtime.prestart(template_of(spec))
    outcome = podman_runtime.run(spec)  # cold, as the node falls back to: the entrypoint is kept
    assert outcome.status == "completed" and outcome.stdout == b"hello\n"
