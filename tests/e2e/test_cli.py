"""The `cynode` command as a user runs it: `up` then Ctrl-C, and the client commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import requests
from harness.processes import clean_environ, free_port, wait_until


def _env(tmp_path, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return clean_environ(
        CYNODE_HOME=str(tmp_path / "home"),
        CYNODE_GATEWAY_LISTEN=f"127.0.0.1:{free_port()}",
        CYNODE_CONTROL_LISTEN=f"127.0.0.1:{free_port()}",
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        **extra,
    )


def cynode(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cynode_core", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _containers(value: str, key: str = "label") -> list[str]:
    """Ids of the containers Podman's ``--filter <key>=<value>`` finds, in any state."""
    out = subprocess.run(
        ["podman", "ps", "-aq", "--filter", f"{key}={value}"],
        env={**os.environ, "CONTAINERS_CONF": "/etc/cynode/containers.conf"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout.split()


def test_up_serves_the_client_commands_and_ctrl_c_leaves_nothing_behind(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = _env(tmp_path, CYNODE_INFERENCE_BACKEND="none")
    gateway = f"http://{env['CYNODE_GATEWAY_LISTEN']}"
    up = subprocess.Popen([sys.executable, "-m", "cynode_core", "up"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: requests.get(f"{gateway}/readyz", timeout=2).status_code == 200, 90, "cynode up ready")
        password = (tmp_path / "home" / "admin-password").read_text().strip()
        assert oct((tmp_path / "home" / "admin-password").stat().st_mode & 0o777) == "0o600"

        login = cynode(env, "login", "--url", gateway, "-u", "admin", stdin=password + "\n")
        assert login.returncode == 0, login.stderr
        creds = tmp_path / "config" / "cynode" / "credentials.json"
        assert oct(creds.stat().st_mode & 0o777) == "0o600"
        assert json.loads(cynode(env, "whoami", "--json").stdout)["handle"] == "admin"

        done = cynode(env, "task", "create", "--command", "echo from-cli", "--name", "cli-task", "--wait")
        assert done.returncode == 0 and "from-cli" in done.stdout, (done.stdout, done.stderr)
        listing = json.loads(cynode(env, "task", "list", "--json", "--status", "completed").stdout)
        assert [t["task_name"] for t in listing["tasks"]] == ["cli-task"]
        assert "from-cli" in cynode(env, "task", "logs", "cli-task").stdout
        assert json.loads(cynode(env, "task", "get", "cli-task", "--json").stdout)["status"] == "completed"
        result = json.loads(cynode(env, "task", "result", "cli-task", "--json").stdout)
        assert json.loads(result["jobs"][0]["result"])["exit_code"] == 0

        running = json.loads(cynode(env, "task", "create", "--command", "sleep 300", "--json").stdout)["id"]
        wait_until(
            lambda: json.loads(cynode(env, "task", "get", running, "--json").stdout)["status"] == "running", 60, "run"
        )
        assert "canceled" in cynode(env, "task", "cancel", running).stdout
        bad = cynode(env, "task", "get", "no-such-task")
        assert bad.returncode == 1 and "404" in bad.stderr and "Task not found" in bad.stderr
        assert cynode(env, "logout").returncode == 0 and not creds.exists()
        assert "not logged in" in cynode(env, "whoami").stderr
    finally:
        up.send_signal(signal.SIGINT)
        try:
            _, stderr = up.communicate(timeout=60)  # also closes the pipe
        except subprocess.TimeoutExpired:
            up.kill()
            up.communicate()
            raise
    assert up.returncode == 0, stderr
    time.sleep(1)
    pgdata = str(tmp_path / "home" / "pgdata")
    leftovers = [p.info for p in psutil.process_iter(["pid", "cmdline"]) if pgdata in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []
    assert not any(str(tmp_path) in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"]))
    assert _containers(f"cynodeai.task_id={running}") == []
