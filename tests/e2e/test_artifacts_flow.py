"""Files in and out of a task end to end (issue 15): upload, a job that reads and writes, download, two orchestrators.

Real processes (two orchestrators on one PostgreSQL, a node agent on
Podman), the client as a user runs it (`cynode task create --attach`,
`cynode task artifacts`, `cynode artifact get`): a file goes up as an
artifact, the task's job finds it in /workspace/inputs and writes a result
file to $CYNODE_ARTIFACTS_DIR, the result comes back as an artifact of the
task, and both orchestrators serve the same download, checksum verified.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import requests
from harness.processes import clean_environ

SCRIPT = (
    "tr a-z A-Z < /workspace/inputs/words.txt > $CYNODE_ARTIFACTS_DIR/shout.txt; wc -c < /workspace/inputs/words.txt"
)


def test_a_file_goes_in_a_result_comes_out_and_both_orchestrators_serve_it(cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = cluster.orchestrator("orchestrator-a").start().wait_healthy()
    second = cluster.orchestrator("orchestrator-b", dispatcher_enabled="false").start().wait_healthy()
    cluster.node("node-01", first).start().wait_ready()
    env = clean_environ(XDG_CONFIG_HOME=str(tmp_path / "config"))

    def cynode(*args: str, stdin: str | None = None, url: str = first.gateway) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "cynode_core", *args]
        return subprocess.run(
            command, env={**env, "CYNODE_URL": url}, input=stdin, capture_output=True, text=True, timeout=120
        )

    password = cluster.secrets.admin_password
    assert cynode("login", "--url", first.gateway, "-u", "admin", stdin=password + "\n").returncode == 0
    words = tmp_path / "words.txt"
    words.write_text("hello artifacts\n" * 1000)

    created = cynode("task", "create", "--command", SCRIPT, "--attach", str(words), "--wait")
    assert created.returncode == 0, created.stderr
    assert "16000" in created.stdout  # the job read the whole input from /workspace/inputs
    task_id = re.search(r"task ([0-9a-f-]{36}): completed", created.stdout).group(1)  # type: ignore[union-attr]

    listed = cynode("task", "artifacts", task_id, "--json")
    assert listed.returncode == 0, listed.stderr
    [output] = json.loads(listed.stdout)["artifacts"]
    assert output["path"] == f"tasks/{task_id}/shout.txt" and output["size_bytes"] == 16000
    expected = hashlib.sha256(("HELLO ARTIFACTS\n" * 1000).encode()).hexdigest()
    assert output["checksum_sha256"] == expected

    for served_by in (first, second):
        target = tmp_path / f"from-{served_by.gateway_port}.txt"
        got = cynode("artifact", "get", output["artifact_id"], "-o", str(target), url=served_by.gateway)
        assert got.returncode == 0, got.stderr
        assert "verified" in got.stdout and hashlib.sha256(target.read_bytes()).hexdigest() == expected

    # The job's result names the artifact instead of carrying the content.
    admin = cluster.admin(first)
    stored = json.loads(admin.request("GET", f"/v1/tasks/{task_id}/result").json()["jobs"][0]["result"])
    [item] = stored["artifacts"]
    assert item["artifact_id"] == output["artifact_id"] and "content_base64" not in item


def test_attachment_limits_and_other_users_files_are_clear_4xx(cluster) -> None:  # type: ignore[no-untyped-def]
    orch = cluster.orchestrator().start().wait_healthy()
    admin = cluster.admin(orch)
    missing = "artifact:00000000-0000-4000-8000-000000000000"
    refused = admin.request(
        "POST", "/v1/tasks", json={"prompt": "cat x", "input_mode": "commands", "attachments": [missing]}
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["detail"] == "attachment artifact:00000000-0000-4000-8000-000000000000 is not readable"
    anonymous = requests.get(f"{orch.gateway}/v1/artifacts/00000000-0000-4000-8000-000000000000", timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers["Content-Type"] == "application/problem+json"
