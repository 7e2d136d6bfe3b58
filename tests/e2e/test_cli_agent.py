"""`cynode task create --agent` as a user runs it, on `cynode up`: the sandbox agent works, `task get` shows its steps.

Real processes (`cynode up`: an orchestrator on embedded PostgreSQL and a
node on Podman) and a real hardened sandbox; the node's model is a SCRIPTED
stand-in for an Ollama server (tests/harness/scripted_ollama.py, faithful to
Ollama's published API), reached through the node's own Ollama backend and
the job's inference proxy, so the agent's three steps are known in advance:
it writes a file, runs a command that reads it, and finishes with a report.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import requests
from harness.processes import clean_environ, free_port, wait_until
from harness.scripted_ollama import ScriptedOllama


def _decision(tool: str, **arguments: object) -> str:
    return json.dumps({"action": "call", "tool": tool, "arguments": arguments})


def test_an_agent_task_from_the_command_line_works_step_by_step_and_shows_its_steps(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = ScriptedOllama(
        script=[
            _decision("write_file", path="hello.txt", content="hello from the agent\n"),
            _decision("run_command", argv=["cat", "hello.txt"]),
            _decision("finish", answer="Wrote hello.txt and read it back."),
        ]
    )
    env = clean_environ(
        CYNODE_HOME=str(tmp_path / "home"),
        CYNODE_GATEWAY_LISTEN=f"127.0.0.1:{free_port()}",
        CYNODE_CONTROL_LISTEN=f"127.0.0.1:{free_port()}",
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        CYNODE_INFERENCE_BACKEND="ollama",
        CYNODE_OLLAMA_URL=model.base_url,
        CYNODE_INFERENCE_MODEL=model.model,
    )
    gateway = f"http://{env['CYNODE_GATEWAY_LISTEN']}"

    def cynode(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cynode_core", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    up = subprocess.Popen([sys.executable, "-m", "cynode_core", "up"], env=env, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: requests.get(f"{gateway}/readyz", timeout=2).status_code == 200, 120, "cynode up ready")
        password = (tmp_path / "home" / "admin-password").read_text().strip()
        assert cynode("login", "--url", gateway, "-u", "admin", stdin=password + "\n").returncode == 0

        created = cynode("task", "create", "--agent", "write hello.txt and check it", "--wait")
        assert created.returncode == 0, created.stderr
        assert created.stdout.splitlines()[1:4] == [
            "step 0: write_file success",
            "step 1: run_command success (exit code 0)",
            "step 2: finish success",
        ], created.stdout
        assert "agent success" in created.stdout and "Wrote hello.txt and read it back." in created.stdout

        task_id = re.search(r"task ([0-9a-f-]{36}): completed", created.stdout).group(1)  # type: ignore[union-attr]
        shown = cynode("task", "get", task_id)
        assert shown.returncode == 0, shown.stderr
        assert "status: completed" in shown.stdout and "step 1: run_command success (exit code 0)" in shown.stdout
        assert len(model.decide_requests()) == 3  # one constrained decide call per step, through the node
    finally:
        up.terminate()
        up.wait(timeout=60)
        model.stop()
