"""``PodmanCliRuntime``: a sandbox runtime on the ``podman`` command line through subprocess, no podman-py.

A job is one ``podman run --rm`` with the hardening flags the contract
demands; a timeout or a cancel is a ``podman kill``. Nothing is held
between jobs. It has the contract's optional ``sweep``: the containers a
node's earlier process left are found by their ``cynodeai.node`` label.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import threading
from typing import IO

from cynode_core.contract import LeftoverJob, RuntimeUnavailable, SandboxOutcome, SandboxSpec

CONTAINERS_CONF = "/etc/cynode/containers.conf"


class _Capped:
    """Drains a pipe in a thread, keeping at most ``cap`` bytes."""

    def __init__(self, pipe: IO[bytes], cap: int) -> None:
        self.data, self.truncated, self._cap = bytearray(), False, cap
        self._thread = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self._thread.start()

    def _drain(self, pipe: IO[bytes]) -> None:
        for chunk in iter(lambda: pipe.read(65536), b""):
            room = self._cap - len(self.data)
            self.truncated = self.truncated or len(chunk) > room
            self.data += chunk[: max(room, 0)]

    def result(self) -> bytes:
        self._thread.join()
        return bytes(self.data)


class PodmanCliRuntime:
    """Runs each job with ``podman run``; kills it with ``podman kill``."""

    name = "podman-cli"

    def __init__(self) -> None:
        self._env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", CONTAINERS_CONF),
        }
        self._lock = threading.Lock()
        self._canceled: dict[str, bool] = {}  # running job id -> cancel asked

    def _podman(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["podman", *args], env=self._env, capture_output=True, text=True, check=False)

    def check(self, image: str) -> None:
        """Raise ``RuntimeUnavailable`` unless ``image`` exists and runs ``true``."""
        if self._podman("image", "exists", image).returncode != 0:
            raise RuntimeUnavailable(f"image {image} is missing")
        done = self._podman("run", "--rm", "--network=none", image, "true")
        if done.returncode != 0:
            raise RuntimeUnavailable(f"podman run failed: {done.stderr.strip()}")

    def run(self, spec: SandboxSpec) -> SandboxOutcome:
        """Run one job with ``podman run``, honouring its timeout and a cancel."""
        started, name = dt.datetime.now(dt.UTC), f"cynode-cli-{spec.job_id}"
        argv = [
            "podman",
            "run",
            "--rm",
            "--pull=never",
            "--name",
            name,
            "--network=none",
            "--cap-drop=all",
            "--security-opt=no-new-privileges",
            "--user",
            spec.user,
            "-w",
            "/workspace",
            "-v",
            f"{spec.workspace_dir}:/workspace",
            "--label",
            f"cynodeai.task_id={spec.task_id}",
            "--label",
            f"cynodeai.job_id={spec.job_id}",
        ]
        argv += ["--label", f"cynodeai.node={spec.owner}"] if spec.owner else []
        argv += ["--read-only"] if spec.read_only_root else []
        argv += [f"--pids-limit={spec.pids_limit}"] if spec.pids_limit else []
        argv += [f"--memory={spec.memory_limit}"] if spec.memory_limit else []
        argv += [arg for key, value in spec.env.items() for arg in ("-e", f"{key}={value}")]
        argv += [spec.image, *spec.command]
        with self._lock:
            self._canceled[spec.job_id] = False
        proc = subprocess.Popen(
            argv, env=self._env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stdout is not None and proc.stderr is not None
        out, err = _Capped(proc.stdout, spec.max_output_bytes), _Capped(proc.stderr, spec.max_output_bytes)
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=spec.timeout_seconds)
        timed_out = False
        while proc.poll() is None:  # polling lets a cancel that raced container creation retry the kill
            try:
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                timed_out = dt.datetime.now(dt.UTC) >= deadline
                if timed_out or self._canceled[spec.job_id]:
                    self._podman("kill", name)
                    if timed_out:
                        proc.wait()
        with self._lock:
            canceled = self._canceled.pop(spec.job_id)
        if timed_out or canceled:
            self._podman("rm", "-f", "--ignore", name)
        code = proc.returncode
        stdout, stderr = out.result(), err.result()  # the readers have hit end of file
        proc.stdout.close()
        proc.stderr.close()
        return SandboxOutcome(
            status="timeout" if timed_out else "completed" if code == 0 and not canceled else "failed",
            exit_code=-1 if timed_out else code,
            stdout=stdout,
            stderr=stderr,
            stdout_truncated=out.truncated,
            stderr_truncated=err.truncated,
            started_at=started,
            ended_at=dt.datetime.now(dt.UTC),
        )

    def cancel(self, job_id: str) -> bool:
        """Ask ``run`` to kill the job; True when it is running."""
        with self._lock:
            if job_id not in self._canceled:
                return False
            self._canceled[job_id] = True
        self._podman("kill", f"cynode-cli-{job_id}")
        return True

    def sweep(self, owner: str) -> list[LeftoverJob]:
        """Kill and remove every container labelled ``cynodeai.node=<owner>``; the jobs they ran."""
        if not owner:
            raise ValueError("sweep needs an owner")
        listed = self._podman("ps", "-a", "--filter", f"label=cynodeai.node={owner}", "--format", "json")
        if listed.returncode != 0:
            raise RuntimeUnavailable(f"podman ps failed: {listed.stderr.strip()}")
        found = json.loads(listed.stdout or "[]")
        if not found:
            return []
        ids = [entry["Id"] for entry in found]
        self._podman("kill", *ids)  # some may have exited already: rm below is what counts
        removed = self._podman("rm", "-f", "--ignore", *ids)
        if removed.returncode != 0:
            raise RuntimeUnavailable(f"podman rm failed: {removed.stderr.strip()}")
        labels = [entry.get("Labels") or {} for entry in found]
        return [LeftoverJob(label.get("cynodeai.job_id", ""), label.get("cynodeai.task_id", "")) for label in labels]

    def version(self) -> str:
        """The podman client version."""
        return self._podman("version", "--format", "{{.Client.Version}}").stdout.strip()

    def close(self) -> None:
        """Nothing is held between jobs."""


__all__ = ["PodmanCliRuntime"]
