"""cynode-podman as a plugin: entry point, factory, labels and hardening as Podman records them."""

from __future__ import annotations

import importlib.metadata
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from cynode_podman.runtime import PodmanRuntime

from cynode_core.contract import (
    Mount,
    RuntimeFactory,
    RuntimeUnavailable,
    SandboxOutcome,
    SandboxRuntime,
    SandboxSpec,
)
from cynode_core.plugin_manager import get_plugin_manager
from cynode_core.testing import sh

SpecFactory = Callable[..., SandboxSpec]


def test_entry_point_is_discoverable() -> None:
    found = [ep for ep in importlib.metadata.entry_points(group="cynode") if ep.name == "podman"]
    assert [ep.value for ep in found] == ["cynode_podman.plugin"]


def test_plugin_manager_offers_the_podman_factory(tmp_path: Path) -> None:
    pm = get_plugin_manager()
    factories: dict[str, RuntimeFactory] = {}
    pm.hook.cynode_register_sandbox_runtimes(register=factories.__setitem__)
    runtime = factories["podman"]({"socket_url": None, "state_dir": str(tmp_path)})
    try:
        assert isinstance(runtime, PodmanRuntime) and isinstance(runtime, SandboxRuntime)
        assert runtime.service is None, "the factory must not start anything"
    finally:
        runtime.close()


def test_container_is_labelled_and_hardened_while_it_runs(
    podman_runtime: PodmanRuntime, sandbox_spec_factory: SpecFactory, job_container_ids: Callable[[str], list[str]]
) -> None:
    spec = sandbox_spec_factory(["sleep", "2"], cpus=0.5, memory_limit="256m", pids_limit=100)
    outcomes: list[SandboxOutcome] = []
    worker = threading.Thread(target=lambda: outcomes.append(podman_runtime.run(spec)))
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while not job_container_ids(spec.job_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        attrs = podman_runtime.client.containers.get(job_container_ids(spec.job_id)[0]).attrs
    finally:
        worker.join(10)
    assert outcomes[0].status == "completed"
    assert job_container_ids(spec.job_id) == []
    labels, host = attrs["Config"]["Labels"], attrs["HostConfig"]
    assert (labels["cynodeai.task_id"], labels["cynodeai.job_id"]) == (spec.task_id, spec.job_id)
    assert attrs["Name"] == f"cynode-job-{spec.job_id}"
    assert attrs["Config"]["User"] == "65534:65534"
    assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
    assert host["NetworkMode"] == "none"
    assert "no-new-privileges" in host["SecurityOpt"]
    assert not host["CapAdd"]
    assert host["PidsLimit"] == 100 and host["Memory"] == 256 * 1024 * 1024
    assert host["CpuQuota"] == 50_000 and host["CpuPeriod"] == 100_000
    binds = [m for m in attrs["Mounts"] if m["Type"] == "bind"]
    assert [(m["Source"], m["Destination"]) for m in binds] == [(spec.workspace_dir, "/workspace")]


def test_extra_mounts_are_read_only(
    podman_runtime: PodmanRuntime, sandbox_spec_factory: SpecFactory, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello.txt").write_text("hi")
    spec = sandbox_spec_factory(
        sh("cat /run/cynode/hello.txt; touch /run/cynode/x 2>/dev/null || echo ro"),
        mounts=[Mount(source=str(shared), target="/run/cynode")],
    )
    assert podman_runtime.run(spec).stdout == b"hi" + b"ro\n"


def test_missing_command_fails_like_podman_run(
    podman_runtime: PodmanRuntime, sandbox_spec_factory: SpecFactory
) -> None:
    outcome = podman_runtime.run(sandbox_spec_factory(["no-such-command"]))
    assert (outcome.status, outcome.exit_code) == ("failed", 127)
    assert outcome.stderr.startswith(b"runtime exit 127: ") and b"no-such-command" in outcome.stderr


def test_unreachable_socket_fails_cleanly(sandbox_spec_factory: SpecFactory, sandbox_image: str) -> None:
    runtime = PodmanRuntime(socket_url="unix:///nonexistent/podman.sock")
    try:
        outcome = runtime.run(sandbox_spec_factory(["true"]))
        assert (outcome.status, outcome.exit_code) == ("failed", -1)
        assert b"nonexistent/podman.sock" in outcome.stderr
        with pytest.raises(RuntimeUnavailable, match="nonexistent/podman.sock"):
            runtime.check(sandbox_image)
    finally:
        runtime.close()


def test_a_given_socket_is_used_and_left_running(
    podman_runtime: PodmanRuntime, sandbox_spec_factory: SpecFactory
) -> None:
    assert podman_runtime.service is not None
    other = PodmanRuntime(socket_url=podman_runtime.service.url)
    assert other.run(sandbox_spec_factory(["echo", "shared"])).stdout == b"shared\n"
    other.close()
    assert other.service is None and podman_runtime.client.ping()


def test_per_job_overhead_is_near_the_cli_floor(
    podman_runtime: PodmanRuntime, sandbox_spec_factory: SpecFactory, sandbox_image: str, podman_env: dict[str, str]
) -> None:
    """p50 of a hardened ``true`` job: podman-py on the socket vs ``podman run --rm`` (printed with -s)."""
    spec = sandbox_spec_factory(["true"])
    cli = [
        "podman",
        "run",
        "--rm",
        "--network=none",
        "--user=65534:65534",
        "--cap-drop=all",
        "--security-opt=no-new-privileges",
        "--read-only",
        "--pids-limit=256",
        "--memory=512m",
        "-v",
        f"{spec.workspace_dir}:/workspace",
        "-w",
        "/workspace",
        sandbox_image,
        "true",
    ]
    api_times, cli_times = [], []
    for _ in range(8):
        begin = time.perf_counter()
        assert podman_runtime.run(sandbox_spec_factory(["true"], job_id=str(uuid.uuid4()))).status == "completed"
        api_times.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        subprocess.run(cli, env=podman_env, check=True)
        cli_times.append(time.perf_counter() - begin)
    api, floor = statistics.median(api_times), statistics.median(cli_times)
    print(
        f"\nper-job p50: podman-py {api * 1000:.0f} ms, podman run --rm {floor * 1000:.0f} ms, ratio {api / floor:.2f}"
    )
    assert api < 2.0 * floor + 0.05


def test_stale_container_of_the_same_job_is_replaced(
    podman_runtime: PodmanRuntime, sandbox_image: str, sandbox_spec_factory: SpecFactory, podman_env: dict[str, str]
) -> None:
    spec = sandbox_spec_factory(["echo", "again"])
    # What a node that died mid-job leaves behind, before the orchestrator resends the job.
    name = f"cynode-job-{spec.job_id}"
    subprocess.run(
        ["podman", "create", "--name", name, sandbox_image, "true"], env=podman_env, check=True, capture_output=True
    )
    try:
        assert podman_runtime.run(spec).stdout == b"again\n"
    finally:
        subprocess.run(["podman", "rm", "-f", "--ignore", name], env=podman_env, check=False, capture_output=True)


def test_the_same_job_never_runs_twice_at_once(
    podman_runtime: PodmanRuntime, sandbox_spec_factory: SpecFactory
) -> None:
    spec = sandbox_spec_factory(["sleep", "1"])
    outcomes: list[SandboxOutcome] = []
    worker = threading.Thread(target=lambda: outcomes.append(podman_runtime.run(spec)))
    worker.start()
    time.sleep(0.3)
    second = podman_runtime.run(spec)
    worker.join(10)
    assert (second.status, second.exit_code) == ("failed", -1) and b"already running" in second.stderr
    assert outcomes[0].status == "completed"


def test_on_exit_gets_the_outcome_before_the_container_is_removed(
    podman_runtime: PodmanRuntime, sandbox_spec_factory: SpecFactory, job_container_ids: Callable[[str], list[str]]
) -> None:
    told: list[tuple[SandboxOutcome, list[str]]] = []

    def on_exit(outcome: SandboxOutcome) -> None:
        told.append((outcome, job_container_ids(spec.job_id)))

    spec = sandbox_spec_factory(sh("echo out; echo err >&2; exit 3"), on_exit=on_exit)
    outcome = podman_runtime.run(spec)
    assert len(told) == 1, "on_exit is called once"
    assert told[0][0] is outcome and (outcome.exit_code, outcome.stdout, outcome.stderr) == (3, b"out\n", b"err\n")
    assert len(told[0][1]) == 1, "the container was already gone when on_exit was called"
    assert job_container_ids(spec.job_id) == [], "run returns once the container is removed"


def test_a_failing_on_exit_fails_neither_the_job_nor_the_removal(
    podman_runtime: PodmanRuntime, sandbox_spec_factory: SpecFactory, job_container_ids: Callable[[str], list[str]]
) -> None:
    def on_exit(_outcome: SandboxOutcome) -> None:
        raise RuntimeError("the node's callback broke")

    spec = sandbox_spec_factory(sh("echo fine"), on_exit=on_exit)
    outcome = podman_runtime.run(spec)
    assert (outcome.status, outcome.stdout) == ("completed", b"fine\n")
    assert job_container_ids(spec.job_id) == []
