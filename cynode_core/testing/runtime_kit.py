"""The sandbox runtime contract kit: :class:`SandboxRuntimeContract`.

Every sandbox runtime must pass :class:`SandboxRuntimeContract`. Subclass it
in a test module and provide a ``runtime`` fixture (in the class or a
conftest), best built once per module since a runtime may start a service::

    class TestMyRuntimeContract(SandboxRuntimeContract):
        @pytest.fixture(scope="class")
        @classmethod
        def runtime(cls):
            rt = MyRuntime(...)
            yield rt
            rt.close()

The jobs run with the fixture ``sandbox_spec_factory`` (``spec_fixtures``).
Their image (fixture ``sandbox_image``, default ``localhost/cynode-sandbox:busybox``
or ``$CYNODE_SANDBOX_IMAGE``) needs busybox-like tools: sh, env, id, ls,
find, nc, wget, sleep, head, tr. Override :meth:`SandboxRuntimeContract.job_containers`
for a runtime that is not Podman-based. A runtime with the optional ``sweep``
(:class:`~cynode_core.contract.SweepingRuntime`) is held to it too; for one
without it that case is skipped, saying so.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import threading
import time
import tracemalloc
import uuid
from pathlib import Path

import pytest

from cynode_core.contract import RuntimeUnavailable, SandboxOutcome, SandboxRuntime, SandboxSpec, SweepingRuntime
from cynode_core.testing.spec_fixtures import SpecFactory, sh

MISSING_IMAGE = "localhost/cynode-no-such-image:missing"
SECRET_ENV = "CYNODE_SECRET_TEST"


class SandboxRuntimeContract:
    """The behaviour every sandbox runtime must show (node_contract.md sections 5.3-5.5 and 6)."""

    # True for a runtime that calls SandboxSpec.on_output while the job runs (not only at its end).
    follows_output = False
    # True for a runtime that calls SandboxSpec.on_exit (it may not: the node then ends jobs when run returns).
    tells_exit = False
    # Variables a runtime or image may add besides spec.env (Podman adds the first five).
    allowed_extra_env = frozenset({"PATH", "HOME", "HOSTNAME", "TERM", "container", "PWD", "SHLVL", "_"})

    def job_containers(self, job_id: str) -> list[str]:
        """Ids of containers labelled with ``job_id`` (Podman CLI; override for other runtimes)."""
        podman = shutil.which("podman")
        if podman is None:
            pytest.fail("podman is not installed: override job_containers() for this runtime")
        env = dict(os.environ)
        if "CONTAINERS_CONF" not in env and os.path.exists("/etc/cynode/containers.conf"):
            env["CONTAINERS_CONF"] = "/etc/cynode/containers.conf"
        done = subprocess.run(
            [podman, "ps", "-a", "-q", "--filter", f"label=cynodeai.job_id={job_id}"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        return done.stdout.split()

    def wait_for_containers(self, specs: list[SandboxSpec], timeout: float = 30.0) -> None:
        """Until every spec's job has a container (``job_containers``)."""
        deadline = time.monotonic() + timeout
        while any(not self.job_containers(spec.job_id) for spec in specs):
            if time.monotonic() > deadline:
                pytest.fail(f"no container within {timeout:g} s for some of {[spec.job_id for spec in specs]}")
            time.sleep(0.2)

    def run_ok(self, runtime: SandboxRuntime, spec: SandboxSpec) -> SandboxOutcome:
        """Run ``spec`` and require ``completed``, showing stderr otherwise."""
        outcome = runtime.run(spec)
        assert outcome.status == "completed", (outcome.status, outcome.exit_code, outcome.stderr)
        return outcome

    # -- outcomes ---------------------------------------------------------------

    def test_echo_completes_with_separate_streams(
        self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory
    ) -> None:
        outcome = self.run_ok(runtime, sandbox_spec_factory(sh("echo hello; echo oops >&2; pwd")))
        assert outcome.exit_code == 0
        assert (outcome.stdout, outcome.stderr) == (b"hello\n/workspace\n", b"oops\n")
        assert not outcome.stdout_truncated and not outcome.stderr_truncated
        assert outcome.started_at and outcome.ended_at and outcome.started_at <= outcome.ended_at

    def test_nonzero_exit_is_failed_with_its_code(
        self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory
    ) -> None:
        outcome = runtime.run(sandbox_spec_factory(sh("echo bye; exit 3")))
        assert (outcome.status, outcome.exit_code, outcome.stdout) == ("failed", 3, b"bye\n")

    def test_timeout_kills_and_keeps_partial_output(
        self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory
    ) -> None:
        spec = sandbox_spec_factory(sh("echo start; sleep 600"), timeout_seconds=2)
        begin = time.monotonic()
        outcome = runtime.run(spec)
        assert time.monotonic() - begin < 5
        assert (outcome.status, outcome.exit_code, outcome.stdout) == ("timeout", -1, b"start\n")
        assert self.job_containers(spec.job_id) == []

    def test_output_is_capped_per_stream_in_bounded_memory(
        self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory
    ) -> None:
        cap = 256 * 1024
        spec = sandbox_spec_factory(sh("head -c 10485760 /dev/zero | tr '\\0' a; echo small >&2"), max_output_bytes=cap)
        tracemalloc.start()
        try:
            outcome = runtime.run(spec)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert outcome.status == "completed", outcome.stderr
        assert outcome.stdout_truncated and 0 < len(outcome.stdout) <= cap
        assert outcome.stdout == b"a" * len(outcome.stdout)
        assert (outcome.stderr, outcome.stderr_truncated) == (b"small\n", False)
        assert peak < 4 * cap + 2 * 1024 * 1024, f"peak Python memory {peak} bytes for a 10 MB output"

    def test_followed_output_is_the_start_of_the_outcome(
        self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory
    ) -> None:
        given: list[tuple[float, str, bytes]] = []
        spec = sandbox_spec_factory(
            sh("echo one; sleep 1; echo two >&2; sleep 1; echo three"),
            on_output=lambda stream, data: given.append((time.monotonic(), stream, data)),
        )
        outcome = self.run_ok(runtime, spec)
        returned, calls = time.monotonic(), len(given)
        for stream, full in (("stdout", outcome.stdout), ("stderr", outcome.stderr)):
            assert full.startswith(b"".join(data for _, s, data in given if s == stream)), (stream, given)
        time.sleep(0.3)
        assert len(given) == calls, "on_output was called after run returned"
        if self.follows_output:
            assert (outcome.stdout, outcome.stderr) == (b"one\nthree\n", b"two\n")
            first = next(when for when, _, data in given if data.startswith(b"one"))
            assert returned - first > 1.0, "the first line was given only at the end"

    def test_missing_image_is_a_failed_outcome(
        self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory
    ) -> None:
        spec = sandbox_spec_factory(["true"], image=MISSING_IMAGE)
        outcome = runtime.run(spec)
        assert outcome.status == "failed" and outcome.exit_code in (125, -1)
        assert b"cynode-no-such-image" in outcome.stderr, outcome.stderr
        assert self.job_containers(spec.job_id) == []

    def test_container_is_removed_after_the_run(
        self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory
    ) -> None:
        spec = sandbox_spec_factory(sh("exit 1"))
        runtime.run(spec)
        assert self.job_containers(spec.job_id) == []

    def test_on_exit_gets_the_outcome_run_returns_at_most_once(
        self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory
    ) -> None:
        told: list[SandboxOutcome] = []
        spec = sandbox_spec_factory(sh("echo bye; exit 4"), on_exit=told.append)
        outcome = runtime.run(spec)
        assert len(told) <= 1, "on_exit was called more than once"
        assert told or not self.tells_exit, "on_exit was not called"
        if told:
            assert told[0] == outcome and outcome.exit_code == 4 and outcome.stdout == b"bye\n"
        assert self.job_containers(spec.job_id) == [], "run returned before the container was removed"

    def test_cancel_stops_a_running_job(self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory) -> None:
        spec = sandbox_spec_factory(["sleep", "600"], timeout_seconds=60)
        outcomes: list[SandboxOutcome] = []
        worker = threading.Thread(target=lambda: outcomes.append(runtime.run(spec)))
        worker.start()
        time.sleep(1.0)
        assert runtime.cancel(spec.job_id) is True
        worker.join(10)
        assert not worker.is_alive(), "run() did not return after cancel()"
        assert outcomes[0].status == "failed", outcomes[0]
        assert runtime.cancel(spec.job_id) is False
        assert runtime.cancel(str(uuid.uuid4())) is False
        assert self.job_containers(spec.job_id) == []

    def test_concurrent_runs_do_not_mix(self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory) -> None:
        specs = [sandbox_spec_factory(sh(f"sleep 0.3; echo job-{n}")) for n in range(3)]
        outcomes: dict[int, SandboxOutcome] = {}
        workers = [
            threading.Thread(target=lambda n=n: outcomes.__setitem__(n, runtime.run(specs[n]))) for n in range(3)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert [outcomes[n].stdout for n in range(3)] == [f"job-{n}\n".encode() for n in range(3)]

    def test_check_and_version(self, runtime: SandboxRuntime, sandbox_image: str) -> None:
        runtime.check(sandbox_image)
        with pytest.raises(RuntimeUnavailable):
            runtime.check(MISSING_IMAGE)
        assert isinstance(runtime.version(), str) and runtime.version()

    # -- sweep (an optional member, checked when the runtime has it) --------------

    def test_sweep_removes_the_containers_of_its_owner_and_no_other(
        self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory
    ) -> None:
        if not isinstance(runtime, SweepingRuntime):
            pytest.skip(f"{runtime.name!r} has no sweep (optional): a restarted node stops only the jobs it recorded")
        mine, theirs = f"kit-node-{uuid.uuid4()}", f"kit-node-{uuid.uuid4()}"
        specs = [sandbox_spec_factory(["sleep", "600"], timeout_seconds=120, owner=o) for o in (mine, mine, theirs)]
        outcomes: dict[str, SandboxOutcome] = {}
        workers = [threading.Thread(target=lambda s=s: outcomes.__setitem__(s.job_id, runtime.run(s))) for s in specs]
        for worker in workers:
            worker.start()
        try:
            self.wait_for_containers(specs)
            time.sleep(0.5)  # past the start: a sweep must also stop a running job
            swept = runtime.sweep(mine)
            assert sorted(job.job_id for job in swept) == sorted(s.job_id for s in specs[:2])
            # A job in a warm container may come back without its task (the container was made before it).
            tasks = {s.job_id: s.task_id for s in specs}
            assert all(job.task_id in ("", tasks[job.job_id]) for job in swept), swept
            for spec, worker in zip(specs[:2], workers[:2], strict=True):
                worker.join(15)
                assert not worker.is_alive(), "run() did not return after its container was swept"
                assert outcomes[spec.job_id].status == "failed" and self.job_containers(spec.job_id) == []
            assert workers[2].is_alive() and self.job_containers(specs[2].job_id), "another owner's job was swept"
            assert runtime.sweep(mine) == []
            with pytest.raises(ValueError):
                runtime.sweep("")
        finally:
            deadline = time.monotonic() + 30
            while workers[2].is_alive() and time.monotonic() < deadline and not runtime.cancel(specs[2].job_id):
                time.sleep(0.2)
            workers[2].join(15)
        assert self.job_containers(specs[2].job_id) == []

    # -- isolation --------------------------------------------------------------

    @pytest.mark.parametrize("policy", ["restricted", "none", "open"])
    def test_network_is_denied_for_every_policy(
        self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory, policy: str
    ) -> None:
        outcome = self.run_ok(runtime, sandbox_spec_factory(["ls", "/sys/class/net"], network_policy=policy))
        assert outcome.stdout.split() == [b"lo"]

    def test_host_loopback_service_is_unreachable(
        self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory
    ) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(8)
            port = listener.getsockname()[1]
            outcome = runtime.run(
                sandbox_spec_factory(
                    sh(
                        f"nc -w 2 127.0.0.1 {port} </dev/null && echo nc-connected || echo nc-failed; "
                        f"wget -q -T 2 -O - http://127.0.0.1:{port}/ && echo wget-fetched || echo wget-failed"
                    )
                )
            )
            listener.settimeout(0.3)
            with pytest.raises(socket.timeout):
                listener.accept()
        assert b"nc-failed" in outcome.stdout and b"wget-failed" in outcome.stdout, outcome

    def test_host_files_are_invisible(
        self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory, tmp_path: Path
    ) -> None:
        secret = f"host-only-{uuid.uuid4()}"
        marker = tmp_path / f"cynode-host-marker-{uuid.uuid4()}"
        marker.write_text(secret)
        home = tmp_path / "cynode-home"
        (home / "node").mkdir(parents=True)
        (home / "node" / "config.yaml").write_text(f"node_psk: {secret}\n")
        outcome = self.run_ok(
            runtime,
            sandbox_spec_factory(
                sh(
                    f"cat {marker}; ls -R {home}; cat {home}/node/config.yaml; "
                    f"find / -path /proc -prune -o -path /sys -prune -o -name '{marker.name}' -print; true"
                )
            ),
        )
        assert secret.encode() not in outcome.stdout and marker.name.encode() not in outcome.stdout
        assert b"config.yaml" not in outcome.stdout

    def test_other_workspaces_are_invisible(self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory) -> None:
        secret, name = f"secret-{uuid.uuid4()}", f"a-{uuid.uuid4()}.txt"
        writer = sandbox_spec_factory(sh(f"echo {secret} > /workspace/{name}"))
        self.run_ok(runtime, writer)
        assert (Path(writer.workspace_dir) / name).read_text() == f"{secret}\n"
        outcome = self.run_ok(
            runtime,
            sandbox_spec_factory(
                sh(
                    f"ls -la /workspace; cat /workspace/{name}; "
                    f"find / -path /proc -prune -o -path /sys -prune -o -name '{name}' -print; true"
                )
            ),
        )
        assert secret.encode() not in outcome.stdout and name.encode() not in outcome.stdout

    def test_env_holds_only_spec_env(
        self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Runtimes built before this test should also have run with it set (see the docs).
        monkeypatch.setenv(SECRET_ENV, f"leak-{uuid.uuid4()}")
        spec = sandbox_spec_factory(sh("env; tr '\\0' '\\n' < /proc/1/environ"))
        spec = dataclasses.replace(spec, env={**spec.env, "FOO": "bar"})
        outcome = self.run_ok(runtime, spec)
        assert os.environ[SECRET_ENV].encode() not in outcome.stdout
        assert b"FOO=bar\n" in outcome.stdout and f"CYNODE_JOB_ID={spec.job_id}\n".encode() in outcome.stdout
        names = {line.split("=", 1)[0] for line in outcome.stdout.decode().splitlines() if "=" in line}
        assert names - set(spec.env) <= self.allowed_extra_env, names - set(spec.env)

    # -- hardening --------------------------------------------------------------

    def test_runs_as_nobody_without_privileges(
        self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory
    ) -> None:
        outcome = self.run_ok(
            runtime, sandbox_spec_factory(sh("id -u; grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status"))
        )
        lines = outcome.stdout.decode().split()
        assert lines[0] == "65534"
        assert lines[lines.index("CapEff:") + 1] == "0" * 16 and lines[lines.index("CapPrm:") + 1] == "0" * 16
        assert lines[lines.index("NoNewPrivs:") + 1] == "1"

    def test_root_is_read_only_and_workspace_writable(
        self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory
    ) -> None:
        spec = sandbox_spec_factory(
            sh(
                "touch /etc/x 2>/dev/null || echo root-ro; touch /x 2>/dev/null || echo top-ro; "
                "touch /workspace/w && echo ws-ok"
            )
        )
        outcome = self.run_ok(runtime, spec)
        assert outcome.stdout.split() == [b"root-ro", b"top-ro", b"ws-ok"]
        assert (Path(spec.workspace_dir) / "w").exists()

    def test_fork_bomb_is_contained_by_the_pids_limit(
        self, runtime: SandboxRuntime, sandbox_spec_factory: SpecFactory
    ) -> None:
        spec = sandbox_spec_factory(
            sh("i=0; while [ $i -lt 2000 ]; do sleep 30 & i=$((i+1)); done; echo procs=$(ls -d /proc/[0-9]* | wc -l)"),
            pids_limit=64,
            timeout_seconds=20,
        )
        begin = time.monotonic()
        outcome = runtime.run(spec)
        assert time.monotonic() - begin < 20 and outcome.status in ("failed", "completed"), outcome
        for line in outcome.stdout.decode().splitlines():  # only when the shell survived the fork failures
            if line.startswith("procs="):
                assert int(line[6:]) <= 64
        assert self.job_containers(spec.job_id) == []
        self.run_ok(runtime, sandbox_spec_factory(["true"]))  # the runtime still works
