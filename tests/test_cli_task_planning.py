"""``cynode task create --draft`` and ``cynode task ready`` against a real orchestrator on loopback.

The orchestrator app is served by waitress in this process (no dispatcher,
no node: what is checked is the task's planning state and its job rows);
alice's credentials are stored as ``cynode login`` leaves them. The
commands run through click's CliRunner.
"""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner, Result
from harness.orchestrator import jobs_of

from cynode_core.cli import main


def cynode(env: dict[str, str], *args: str) -> Result:
    return CliRunner(env=env).invoke(main, ["task", *args], catch_exceptions=False)


def test_create_a_draft_then_make_it_ready(orchestrator: Any, logged_in: Any) -> None:
    env, _ = logged_in
    made = cynode(env, "create", "--command", "echo later", "--name", "later", "--draft", "--json")
    assert made.exit_code == 0, made.output
    draft = json.loads(made.stdout)
    assert (draft["status"], draft["planning_state"]) == ("queued", "draft")
    assert jobs_of(orchestrator.db, draft["id"]) == []

    text = cynode(env, "create", "--command", "echo other", "--draft")
    assert text.exit_code == 0, text.output
    assert text.stdout.rstrip().endswith(", draft (start it with: cynode task ready " + text.stdout.split()[1] + ")")

    shown = cynode(env, "get", "later")
    assert "planning_state: draft" in shown.stdout.splitlines()
    table = cynode(env, "list").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "STATUS", "PLANNING", "CREATED", "PROMPT"]
    assert [line.split()[3] for line in table[1:]] == ["draft", "draft"]

    ready = cynode(env, "ready", "later")
    assert ready.exit_code == 0, ready.output
    lines = ready.stdout.splitlines()
    assert f"id: {draft['id']}" in lines and "planning_state: ready" in lines and "status: queued" in lines
    assert len(jobs_of(orchestrator.db, draft["id"])) == 1

    again = cynode(env, "ready", draft["id"], "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["planning_state"] == "ready"
    assert len(jobs_of(orchestrator.db, draft["id"])) == 1


def test_ready_errors_are_shown(orchestrator: Any, logged_in: Any) -> None:
    env, api = logged_in
    missing = cynode(env, "ready", "no-such-task")
    assert missing.exit_code == 1 and "404 Not Found: Task not found" in missing.output
    draft = json.loads(cynode(env, "create", "--command", "echo x", "--draft", "--json").stdout)
    assert api.request("POST", f"/v1/tasks/{draft['id']}/cancel").status_code == 200
    canceled = cynode(env, "ready", draft["id"])
    assert canceled.exit_code == 1 and "409 Conflict: task is not in a runnable state" in canceled.output
    both = cynode(env, "create", "--command", "echo x", "--draft", "--wait")
    assert both.exit_code == 2 and "--wait has nothing to wait for" in both.output
