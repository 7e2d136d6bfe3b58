"""Following a task that a real node runs in Podman, through both orchestrators of one database.

The node sends the lines while the job runs (``output`` reports; their
timing is tests/e2e/test_live_output.py); what this shows is the whole path
from a real container to a follower on an orchestrator that did not
dispatch the job, and to ``cynode task logs --follow``.
"""

from __future__ import annotations

import subprocess
import sys
import threading

from harness.processes import clean_environ

from cynode_core.client import Credentials, GatewayClient, ServerEvent

COMMAND = "for i in 1 2 3; do echo line-$i; sleep 1; done; echo done >&2"


def test_a_node_task_is_followed_to_its_end_over_sse_and_with_the_cli(cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = cluster.orchestrator("orch-a").start().wait_healthy()
    second = cluster.orchestrator("orch-b", dispatcher_enabled="false").start().wait_healthy()
    cluster.node("node-01", first).start().wait_ready()
    admin = cluster.admin(first)
    assert admin.credentials is not None
    task = admin.create_command(COMMAND)

    # Followed from the start on the orchestrator that does not dispatch.
    follower = GatewayClient(second.gateway, Credentials(second.gateway, admin.token, admin.credentials.refresh_token))
    got: list[ServerEvent] = []
    reader = threading.Thread(target=lambda: got.extend(follower.follow_logs(task)), daemon=True)
    reader.start()
    reader.join(90)
    assert not reader.is_alive(), f"the follow did not end; so far: {got}"
    lines = [(e.event, e.json()["text"]) for e in got if e.event in ("stdout", "stderr")]
    assert lines == [("stdout", "line-1\n"), ("stdout", "line-2\n"), ("stdout", "line-3\n"), ("stderr", "done\n")]
    assert [int(e.id or 0) for e in got if e.event in ("stdout", "stderr")] == [1, 2, 3, 4]
    assert [e.json()["status"] for e in got if e.event == "status"][0] in ("queued", "running")
    assert (got[-1].event, got[-1].json()["status"]) == ("end", "completed")

    # The CLI, after the end: the whole output, each stream to its own file, then it exits.
    config = tmp_path / "cli-config"
    Credentials(first.gateway, admin.token, admin.credentials.refresh_token).save(
        config / "cynode" / "credentials.json"
    )
    cli = subprocess.run(
        [sys.executable, "-m", "cynode_core", "task", "logs", task, "--follow"],
        env=clean_environ(XDG_CONFIG_HOME=str(config)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert (cli.stdout, cli.stderr) == ("line-1\nline-2\nline-3\n", "done\n")
