"""Sandbox-agent tasks end to end (agents_contract.md 5, 7): created with ``use_sba``, made ready, run by the node.

Real processes: an orchestrator on PostgreSQL and a node agent on Podman.
Direct-steps mode needs no model, so the run is deterministic: the agent
writes a file, runs a command that reads it, reads it back, and reports.
"""

from __future__ import annotations

import json

STEPS = [
    {"type": "write_file", "args": {"path": "hello.txt", "content": "hello from the agent\n"}},
    {"type": "run_command", "args": {"argv": ["cat", "hello.txt"]}},
    {"type": "read_file", "args": {"path": "hello.txt"}},
]


def test_a_draft_sba_task_runs_its_steps_once_made_ready(cluster) -> None:  # type: ignore[no-untyped-def]
    orch = cluster.orchestrator().start().wait_healthy()
    cluster.node("node-01", orch).start().wait_ready()
    admin = cluster.admin(orch)
    body = {"prompt": "write hello.txt and check it", "use_sba": True, "sba_steps": STEPS, "planning_state": "draft"}
    created = admin.request("POST", "/v1/tasks", json=body)
    assert created.status_code == 201, created.text
    task = created.json()["id"]
    assert created.json()["planning_state"] == "draft"
    ready = admin.request("POST", f"/v1/tasks/{task}/ready")
    assert ready.status_code == 200 and ready.json()["planning_state"] == "ready", ready.text
    result = admin.wait_result(task, timeout=120)
    assert result["status"] == "completed", result
    stored = json.loads(result["jobs"][0]["result"])
    sba = stored["sba_result"]
    assert sba["status"] == "success" and sba["inference_used"] is False
    assert [(s["type"], s["status"]) for s in sba["steps"]] == [
        ("write_file", "success"),
        ("run_command", "success"),
        ("read_file", "success"),
    ]
    assert sba["steps"][1]["output"] == "hello from the agent\n"


def test_sba_steps_are_checked_when_the_task_is_created(cluster) -> None:  # type: ignore[no-untyped-def]
    orch = cluster.orchestrator().start().wait_healthy()
    admin = cluster.admin(orch)
    cases = [
        ({"prompt": "x", "sba_steps": STEPS}, "sba_steps requires use_sba"),
        ({"prompt": "x", "use_sba": True, "sba_steps": [{"type": "rm_rf", "args": {}}]}, "sba_steps[0].type"),
        ({"prompt": "x", "use_sba": True, "sba_steps": "write_file"}, "sba_steps must be an array"),
        (
            {"prompt": "x", "use_sba": True, "sba_steps": [{"type": "read_file", "args": []}]},
            "sba_steps[0].args: must be an object",
        ),
    ]
    for body, detail in cases:
        answer = admin.request("POST", "/v1/tasks", json=body)
        assert answer.status_code == 400 and detail in answer.json()["detail"], (body, answer.text)
