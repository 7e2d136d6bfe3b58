"""A job cannot exhaust its node (issue 11): CPU, /workspace and output limits, measured from inside real sandboxes.

Every job goes through a real Worker API into real Podman; the limits are
read by the job itself (its cgroup files, ``df`` on its workspace) and
tested by running into them (busy loops, ``dd`` past the quota, a flood of
output).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from node_helpers import Worker, WorkerFactory, job_body, make_settings

from cynode_core.contract import SandboxRuntime
from cynode_core.settings import ConfigError
from node_agent.executor import JobExecutor
from node_agent.job_store import JobStore
from node_agent.settings import DEFAULT_SANDBOX_CPUS, DEFAULT_WORKSPACE_QUOTA_MB
from node_agent.workspace import MIB, Workspaces

# cgroup v2 shows "<quota> <period>" in cpu.max; v1 (these hosts) two files.
CPU_QUOTA = (
    "if [ -e /sys/fs/cgroup/cpu.max ]; then cat /sys/fs/cgroup/cpu.max; "
    "else echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); fi"
)
# Two busy loops for two seconds, with the CPU time the job's cgroup used meanwhile (v1 cpuacct, in ns).
BUSY_LOOPS = (
    "u0=$(cat /sys/fs/cgroup/cpuacct/cpuacct.usage); w0=$(cut -d' ' -f1 /proc/uptime); "
    "timeout 2 sh -c 'while :; do :; done' & timeout 2 sh -c 'while :; do :; done' & wait; "
    "u1=$(cat /sys/fs/cgroup/cpuacct/cpuacct.usage); w1=$(cut -d' ' -f1 /proc/uptime); echo $u0 $w0 $u1 $w1"
)
WORKSPACE_SIZE = "df -k /workspace | tail -n 1"  # 1K-blocks in the second column
FLOOD_BYTES = 50_000_000


def run(worker: Worker, script: str, **sandbox: Any) -> dict[str, Any]:
    response = worker.run(job_body(["sh", "-c", script], **sandbox))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def loop_mounts_under(root: Path) -> list[str]:
    return [line for line in Path("/proc/mounts").read_text().splitlines() if str(root) in line]


def test_the_default_limits_as_a_job_sees_them(worker: Worker) -> None:
    """One CPU and a 1 GiB file system of its own at /workspace, unless the node is configured otherwise."""
    assert worker.settings.sandbox_cpus == DEFAULT_SANDBOX_CPUS == 1.0
    assert worker.settings.workspace_quota_mb == DEFAULT_WORKSPACE_QUOTA_MB == 1024
    result = run(worker, f"{CPU_QUOTA}; {WORKSPACE_SIZE}; {BUSY_LOOPS}")
    assert result["status"] == "completed", result
    cpu, workspace, usage = result["stdout"].splitlines()
    quota, period = cpu.split()
    assert int(quota) == int(period) == 100000, cpu  # 1 CPU: the whole period, once
    total_kib = int(workspace.split()[1])
    # The ext4 of the quota, less its own metadata (about 2 %): not the host's disk.
    assert 0.95 * 1024 * 1024 < total_kib <= 1024 * 1024, workspace
    # Two busy loops on this 2-core host: one CPU at most (less when the host is busy).
    u0, w0, u1, w1 = (float(v) for v in usage.split())
    cpus = (u1 - u0) / 1e9 / (w1 - w0)
    assert cpus < 1.1, cpus
    print(f"inside the sandbox: cpu quota {quota}/{period} us, busy loops {cpus:.2f} CPUs, /workspace {total_kib} KiB")


def test_a_job_writing_past_its_quota_gets_enospc_and_the_node_keeps_working(start_worker: WorkerFactory) -> None:
    worker = start_worker(workspace_quota_mb=32)
    script = f"{WORKSPACE_SIZE}; dd if=/dev/zero of=/workspace/fill bs=1M count=64; echo dd exit $?; ls -l /workspace"
    result = run(worker, script)
    assert result["status"] == "completed", result
    df_line, dd_exit, *listing = result["stdout"].splitlines()
    assert "No space left on device" in result["stderr"], result["stderr"]
    assert dd_exit != "dd exit 0", result
    total_kib = int(df_line.split()[1])
    filled = int(next(line for line in listing if line.endswith(" fill")).split()[4])
    assert 28 * 1024 < total_kib <= 32 * 1024, df_line
    assert filled <= 32 * MIB, filled
    print(f"quota 32 MiB: /workspace {total_kib} KiB, dd stopped at {filled} bytes")
    # The node: healthy, its next job runs, and nothing of the full workspace is left on the host.
    assert requests.get(f"{worker.url}/healthz", timeout=5).status_code == 200
    assert run(worker, "echo ok > /workspace/f && cat /workspace/f")["stdout"] == "ok\n"
    assert loop_mounts_under(worker.workspace_root) == []
    assert list(worker.workspace_root.iterdir()) == []


def test_no_quota_when_configured_off(start_worker: WorkerFactory) -> None:
    worker = start_worker(workspace_quota_mb=0, sandbox_cpus="0")
    result = run(worker, f"{CPU_QUOTA}; {WORKSPACE_SIZE}")
    cpu, workspace = result["stdout"].splitlines()
    assert cpu.split()[0] in ("-1", "max"), cpu
    host_kib = os.statvfs(worker.workspace_root).f_blocks * os.statvfs(worker.workspace_root).f_frsize // 1024
    assert int(workspace.split()[1]) == host_kib, (workspace, host_kib)  # the host's file system itself


def test_a_kept_workspace_keeps_its_files_but_not_its_mount(start_worker: WorkerFactory) -> None:
    worker = start_worker(workspace_quota_mb=16, keep_workspaces=True)
    body = job_body(["sh", "-c", "mkdir d && echo kept > d/f && ln -s /etc/hostname link && df -k . | tail -n 1"])
    result = worker.run(body).json()
    assert int(result["stdout"].split()[1]) <= 16 * 1024, result  # it ran on the quota's file system
    kept = worker.workspace_root / body["job_id"]
    assert (kept / "d" / "f").read_text() == "kept\n"
    assert os.readlink(kept / "link") == "/etc/hostname"  # copied as a link, not as the host's file
    assert not os.path.ismount(kept) and loop_mounts_under(worker.workspace_root) == []
    assert sorted(p.name for p in worker.workspace_root.iterdir()) == [body["job_id"]]


def test_a_flooding_job_ends_in_about_the_time_it_ran_with_its_output_capped(worker: Worker) -> None:
    """Before the log cap: 50 MB of two-byte lines, a 1.17 GB container log and about 300 s to read it."""
    began = time.monotonic()
    result = run(worker, f"yes | head -c {FLOOD_BYTES}")
    elapsed = time.monotonic() - began
    assert result["status"] == "completed", result
    assert elapsed < 30, f"the flood job took {elapsed:.1f} s"
    cap = worker.settings.max_output_bytes
    assert result["stdout"] == "y\n" * (cap // 2) and result["truncated"]["stdout"] is True
    print(f"{FLOOD_BYTES}-byte flood: {elapsed:.1f} s end to end, stdout kept {len(result['stdout'])} bytes")


def test_a_workspace_a_crash_left_mounted_is_unmounted_when_the_node_starts_again(
    podman_runtime: SandboxRuntime, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path / "home", workspace_quota_mb=16)
    key, task = str(uuid.uuid4()), str(uuid.uuid4())
    # What a killed agent leaves: the job's start record and its workspace, mounted, with files in it.
    JobStore(settings.resolved_state_dir / "jobs").mark_running(key, task)
    leftover = Workspaces(settings.resolved_workspace_root, quota_mb=16).create(key)
    (leftover / "data").write_bytes(b"x" * 1000)
    assert os.path.ismount(leftover)
    JobExecutor(podman_runtime, settings)  # the agent, started again, settles what it finds
    assert not os.path.ismount(leftover) and not leftover.exists()
    assert list(settings.resolved_workspace_root.iterdir()) == []
    assert loop_mounts_under(settings.resolved_workspace_root) == []


def test_discard_unmounts_a_mounted_workspace(tmp_path: Path) -> None:
    workspaces = Workspaces(tmp_path / "root", quota_mb=8)
    path = workspaces.create("job")
    assert os.path.ismount(path) and os.listdir(path) == []
    assert (path.stat().st_uid, path.stat().st_mode & 0o777) == (65534, 0o700)
    workspaces.discard("job")
    assert not path.exists() and list((tmp_path / "root").iterdir()) == []


@pytest.mark.parametrize(
    ("overrides", "cpus", "quota"),
    [({}, 1.0, 1024), ({"sandbox_cpus": "0", "workspace_quota_mb": "0"}, None, 0), ({"sandbox_cpus": ""}, None, 1024)],
)
def test_limit_settings(tmp_path: Path, overrides: dict[str, str], cpus: float | None, quota: int) -> None:
    settings = make_settings(tmp_path, **overrides)
    assert (settings.sandbox_cpus, settings.workspace_quota_mb) == (cpus, quota)


@pytest.mark.parametrize("overrides", [{"sandbox_cpus": "-1"}, {"sandbox_cpus": "inf"}, {"workspace_quota_mb": "-1"}])
def test_bad_limit_settings_are_refused(tmp_path: Path, overrides: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        make_settings(tmp_path, **overrides)
