"""Nothing outlives its supervisor (issue 11, item 3), on real processes.

Whatever ends ``cynode up`` (SIGKILL, the terminal's SIGHUP, a reader of its
output that went away, then Ctrl-C), its orchestrator, node agents, embedded
PostgreSQL and Podman services end with it, and the next ``cynode up`` on the
same home and ports starts. A node agent killed with SIGKILL takes its Podman
service and its job containers with it; an orchestrator killed with SIGKILL,
its embedded PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import requests
from harness.processes import Orchestrator, clean_environ, free_port, wait_until

from e2e.test_cli import _containers

PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": "/etc/cynode/containers.conf"}
GONE_WITHIN = 20.0  # seconds for the whole tree to end (the watchers give children 10 s, then kill)


class Up:
    """``cynode up --inference none`` on a home and ports of the test's own."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        self.env = clean_environ(
            CYNODE_HOME=str(self.home),
            CYNODE_GATEWAY_LISTEN=f"127.0.0.1:{free_port()}",
            CYNODE_CONTROL_LISTEN=f"127.0.0.1:{free_port()}",
            XDG_CONFIG_HOME=str(tmp_path / "config"),
        )
        self.log = tmp_path / "up.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: dict[int, psutil.Process] = {}  # every process of the stack ever seen, by pid

    @property
    def gateway(self) -> str:
        return f"http://{self.env['CYNODE_GATEWAY_LISTEN']}"

    def start(self, **streams: object) -> Up:
        args = [sys.executable, "-m", "cynode_core", "up", "--inference", "none"]
        if not streams:
            with open(self.log, "ab") as out:
                self.proc = subprocess.Popen(args, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        else:
            self.proc = subprocess.Popen(args, env=self.env, **streams)  # type: ignore[call-overload]
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, f"cynode up exited: {self.output()}"
            return requests.get(f"{self.gateway}/readyz", timeout=2).status_code == 200

        wait_until(ready, timeout, "cynode up ready", interval=0.2)
        self.remember()

    def output(self) -> str:
        """What ``up`` wrote, then the end of each child's log."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        for log in sorted((self.home / "logs").glob("*.log")):
            text += f"\n--- {log.name} ---\n" + log.read_text(errors="replace")[-3000:]
        return text

    def remember(self) -> None:
        """Note the stack's processes now: up's descendants, the postmaster and its children, the Podman services."""
        assert self.proc is not None
        procs = psutil.Process(self.proc.pid).children(recursive=True)
        postmaster = self.home / "pgdata" / "postmaster.pid"
        if postmaster.exists():
            pg = psutil.Process(int(postmaster.read_text().split()[0]))
            procs += [pg, *pg.children(recursive=True)]
        procs += [p for p in psutil.process_iter() if _mentions(p, str(self.home))]
        self.seen.update({p.pid: p for p in procs})
        names = {" ".join(p.cmdline()[:4]) for p in self.seen.values() if p.is_running()}
        assert any("orchestrator" in n for n in names) and any("node" in n for n in names), names
        assert any("postgres" in n for n in names) and any("podman" in n for n in names), names

    def alive(self) -> list[str]:
        """The stack's processes still running (a zombie counts as ended)."""
        left = [p for p in self.seen.values() if _running(p)]
        left += [p for p in psutil.process_iter() if p.pid not in self.seen and _mentions(p, str(self.home))]
        return [f"{p.pid} {' '.join(_cmdline(p))[:160]}" for p in left if _running(p)]

    def assert_all_gone(self) -> None:
        try:
            wait_until(lambda: not self.alive(), GONE_WITHIN, "every process of the stack to end", interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nleft running:\n" + "\n".join(self.alive())) from None

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=timeout)

    def kill_everything(self) -> None:
        """Teardown: whatever a failing test left behind is killed, never handed to the next test."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for p in list(self.seen.values()) + [p for p in psutil.process_iter() if _mentions(p, str(self.home))]:
            if _running(p):
                try:
                    p.kill()
                except psutil.Error:
                    pass


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def _mentions(p: psutil.Process, home: str) -> bool:
    """``p`` names ``home`` on its command line, or runs with it as ``CYNODE_HOME``."""
    if home in " ".join(_cmdline(p)):
        return True
    try:
        return p.environ().get("CYNODE_HOME") == home
    except psutil.Error:
        return False


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_sigkill_of_up_ends_the_whole_stack_and_the_next_up_starts_then_stops_on_sighup(tmp_path: Path) -> None:
    up = Up(tmp_path).start()
    again = Up(tmp_path)
    again.env, again.log = up.env, tmp_path / "up-again.log"
    try:
        up.wait_ready()
        assert up.proc is not None
        up.proc.kill()
        up.proc.wait(timeout=10)
        started = time.monotonic()
        up.assert_all_gone()
        print(f"stack gone {time.monotonic() - started:.1f} s after SIGKILL of cynode up")
        # Same home, same ports: nothing holds them any more.
        again.start().wait_ready()
        assert again.proc is not None
        again.proc.send_signal(signal.SIGHUP)  # the terminal that ran it was closed
        assert again.proc.wait(timeout=60) == 0, again.output()
        assert "==> stopped" in again.output()
        again.assert_all_gone()
    finally:
        up.kill_everything()
        again.kill_everything()


def test_a_closed_output_pipe_then_ctrl_c_stops_up_cleanly(tmp_path: Path) -> None:
    """``cynode up 2>&1 | head -c 100``: the reader is gone long before Ctrl-C."""
    up = Up(tmp_path).start(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        assert up.proc is not None and up.proc.stdout is not None
        first = up.proc.stdout.read(100)
        assert first.startswith(b"==> "), first
        up.proc.stdout.close()  # every later write of up meets a broken pipe
        up.wait_ready()
        time.sleep(1.5)  # the "cynode is up" line and a check of the children happen after readiness
        assert up.proc.poll() is None, "cynode up died of its broken output pipe"
        assert up.stop() == 0
        up.assert_all_gone()
    finally:
        up.kill_everything()


def test_sigkill_of_a_node_agent_ends_its_podman_service_and_its_containers(cluster) -> None:  # type: ignore[no-untyped-def]
    orch = cluster.orchestrator().start().wait_healthy()
    node = cluster.node("node-01", orch).start().wait_ready()
    api = cluster.admin(orch)
    wait_until(lambda: requests.get(f"{orch.gateway}/readyz", timeout=2).status_code == 200, 30, "orchestrator ready")
    task = api.create_command("sleep 300")
    wait_until(lambda: api.call("GET", f"/v1/tasks/{task}")["status"] == "running", 30, "task running")
    # Found by name: a warm container took the job's name with the job (its labels came before it).
    job = wait_until(lambda: api.call("GET", f"/v1/tasks/{task}/result")["jobs"], 30, "the task's job")[0]["id"]
    container = wait_until(lambda: _containers(f"^cynode-job-{job}$", key="name"), 30, "the job's container")[0]
    owner = str((Path(cluster.tmp) / "home-node-01" / "node" / "node-01").resolve())

    def state_of() -> dict[str, Any]:
        inspect = subprocess.run(
            ["podman", "inspect", container], env=PODMAN_ENV, capture_output=True, text=True, timeout=30, check=True
        )
        return dict(json.loads(inspect.stdout)[0]["State"])

    # The task is "running" once its node took it; its container may still be starting.
    state = wait_until(lambda: (s := state_of())["Running"] and s, 30, "the job's container to run")
    agent = psutil.Process(node.proc.pid)
    tracked = [*agent.children(recursive=True), psutil.Process(state["ConmonPid"]), psutil.Process(state["Pid"])]
    assert any("system" in _cmdline(p) and "service" in _cmdline(p) for p in tracked), [_cmdline(p) for p in tracked]
    started = time.monotonic()
    os.kill(node.proc.pid, signal.SIGKILL)  # the agent alone: nothing but the kernel tells the rest
    node.proc.wait(timeout=10)
    try:
        wait_until(
            lambda: not [p for p in tracked if _running(p)] and not _containers(f"cynodeai.node={owner}"),
            GONE_WITHIN,
            "the Podman service, the job's conmon and process, and the node's containers to be gone",
            interval=0.2,
        )
        print(f"service and container gone {time.monotonic() - started:.1f} s after SIGKILL of the agent")
    finally:  # Podman first: a container whose conmon was killed is stuck "Stopping" for a while
        subprocess.run(["podman", "rm", "-f", "-t", "0", container], env=PODMAN_ENV, capture_output=True, timeout=60)
        for p in tracked:
            if _running(p):
                p.kill()
        _unmount_under(cluster.tmp)


def _unmount_under(root: Path) -> None:
    """Unmount the job workspaces (loop-mounted quotas) a killed agent left, which only its restart would undo."""
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(f"{root}/")]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", point], capture_output=True, timeout=30, check=False)


def test_sigkill_of_the_orchestrator_stops_its_embedded_postgres(tmp_path: Path) -> None:
    home = tmp_path / "home"
    orch = Orchestrator(clean_environ(CYNODE_HOME=str(home)), tmp_path).start()
    postmaster: psutil.Process | None = None
    try:
        orch.wait_healthy()
        postmaster = psutil.Process(int((home / "pgdata" / "postmaster.pid").read_text().split()[0]))
        backends = postmaster.children()
        assert backends and orch.proc is not None
        assert json.loads((home / "pgdata" / ".handle_pids.json").read_text()) == [orch.proc.pid]
        orch.kill()  # SIGKILL to the orchestrator's session: no exit code of its own runs
        started = time.monotonic()
        wait_until(lambda: not [p for p in [postmaster, *backends] if _running(p)], GONE_WITHIN, "PostgreSQL to stop")
        print(f"PostgreSQL stopped {time.monotonic() - started:.1f} s after SIGKILL of the orchestrator")
        assert json.loads((home / "pgdata" / ".handle_pids.json").read_text()) == []
        assert not (home / "pgdata" / "postmaster.pid").exists()
    finally:
        orch.kill()
        if postmaster is not None and _running(postmaster):
            postmaster.kill()
