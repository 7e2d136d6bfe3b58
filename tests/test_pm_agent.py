"""The project-manager agent behind ``cynodeai.pm``: its loop's mechanics on a scripted model (agents_contract.md 7).

Real parts: the orchestrator app served over HTTP on loopback (its control
plane's ``/mcp`` is what the agent calls, with the official ``mcp`` SDK
client and a turn token), its PostgreSQL database, the official ``openai``
SDK and raw SSE as clients. The model is a SCRIPTED stand-in for Ollama's
chat API (tests/harness/scripted_ollama.py) because these tests assert that
each emitted call was checked, executed, audited and fed back, and that
limits stop a loop, which must not depend on what a model says.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import requests
from harness.api import ApiClient
from harness.orchestrator import LiveServer
from harness.scripted_ollama import REPLY_TEXT, ScriptedOllama
from sqlalchemy import text

EVENTS = {"X-CyNodeAI-Events": "true"}


@pytest.fixture
def ollama() -> Iterator[ScriptedOllama]:
    stub = ScriptedOllama()
    yield stub
    stub.stop()


@pytest.fixture
def settings_overrides(ollama: ScriptedOllama, control_port: int) -> dict[str, Any]:
    return {
        "chat_inference_url": ollama.base_url,
        "inference_model": ollama.model,
        "control_listen": f"127.0.0.1:{control_port}",
        "pma_tools": ["task.create", "task.ready", "help.list"],
        "pma_max_steps": 3,
    }


@pytest.fixture
def user(api: ApiClient, orchestrator: Any) -> str:
    api.login("admin", orchestrator.secrets.admin_password, expect=200)
    return api.token


def _sse(response: requests.Response) -> list[tuple[str, str]]:
    """(event name or "", data) of each server-sent event."""
    events, name, data = [], "", []
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            events.append((name, "\n".join(data)))
            name, data = "", []
    return events


def _task_id_from_last_result(body: dict[str, Any]) -> str:
    results = [m["content"] for m in body["messages"] if m["content"].startswith("Tool result for task.create")]
    found = re.search(r'"task_id":"([0-9a-f-]{36})"', results[-1])
    assert found, results
    return found.group(1)


def _ready_call(body: dict[str, Any]) -> str:
    task_id = _task_id_from_last_result(body)
    return json.dumps({"action": "call", "tool": "task.ready", "arguments": {"task_id": task_id}})


def _audit_rows(orchestrator: Any) -> list[dict[str, Any]]:
    with orchestrator.db.session() as session:
        rows = session.execute(
            text(
                "SELECT tool_name, decision, status, user_id, role_names, task_id FROM mcp_tool_call_audit_log "
                "ORDER BY created_at"
            )
        ).mappings()
        return [dict(r) for r in rows]


def test_a_pm_turn_creates_a_draft_makes_it_ready_and_streams_its_steps(
    live_control_plane: str, user: str, orchestrator: Any, ollama: ScriptedOllama
) -> None:
    create = {"action": "call", "tool": "task.create", "arguments": {"prompt": "echo hi", "input_mode": "commands"}}
    ollama.script = [json.dumps(create), _ready_call, json.dumps({"action": "reply"})]
    with requests.post(
        f"{live_control_plane}/v1/chat/completions",
        json={"model": "cynodeai.pm", "stream": True, "messages": [{"role": "user", "content": "run echo hi"}]},
        headers={"Authorization": f"Bearer {user}", **EVENTS},
        stream=True,
        timeout=120,
    ) as response:
        assert response.status_code == 200, response.text
        events = _sse(response)
    names = [name for name, _ in events if name]
    assert names.count("cynodeai.iteration_start") == 3, names
    assert [json.loads(d)["name"] for n, d in events if n == "cynodeai.tool_call"] == ["task.create", "task.ready"]
    progress = [(json.loads(d)["state"], json.loads(d)["tool"]) for n, d in events if n == "cynodeai.tool_progress"]
    assert progress == [
        ("calling", "task.create"),
        ("result", "task.create"),
        ("calling", "task.ready"),
        ("result", "task.ready"),
    ]
    content = "".join(
        json.loads(d)["choices"][0]["delta"].get("content") or ""
        for n, d in events
        if not n and d != "[DONE]" and "choices" in json.loads(d)
    )
    assert content == REPLY_TEXT and events[-1] == ("", "[DONE]")

    # The task: created by the caller through the gateway, ready, with one queued job.
    with orchestrator.db.session() as session:
        tasks = session.execute(
            text(
                "SELECT t.id, t.created_by, t.planning_state, count(j.id) FROM tasks t "
                "LEFT JOIN jobs j ON j.task_id = t.id GROUP BY t.id"
            )
        ).all()
        caller = session.execute(text("SELECT id FROM users WHERE handle = 'admin'")).scalar_one()
    assert len(tasks) == 1 and tasks[0][1] == caller and tasks[0][2] == "ready" and tasks[0][3] == 1, tasks

    # Each call checked, executed and audited: allow/success, the caller, role pm.
    rows = _audit_rows(orchestrator)
    assert [(r["tool_name"], r["decision"], r["status"]) for r in rows] == [
        ("task.create", "allow", "success"),
        ("task.ready", "allow", "success"),
    ]
    assert {r["user_id"] for r in rows} == {caller} and all(r["role_names"] == ["pm"] for r in rows)

    # Fed back: the second decide call saw the first result; decide calls are constrained, the reply is not.
    decides, replies = ollama.decide_requests(), ollama.reply_requests()
    assert len(decides) == 3 and len(replies) == 1
    assert any(str(tasks[0][0]) in m["content"] for m in decides[1]["messages"])
    assert all(d["options"]["temperature"] == 0 and d["options"]["seed"] == 42 for d in decides)
    assert "format" not in replies[0] and replies[0]["options"]["temperature"] == 0.2

    # The answer keeps its steps as parts; the turn token is revoked.
    with orchestrator.db.session() as session:
        meta = session.execute(
            text("SELECT metadata FROM chat_messages WHERE role = 'assistant' ORDER BY created_at DESC LIMIT 1")
        ).scalar_one()
        token = session.execute(text("SELECT revoked_at, role, issued_by FROM agent_tokens")).one()
    kinds = [p["type"] for p in meta["parts"]]
    assert kinds == ["tool_call", "tool_result", "tool_call", "tool_result", "text"], kinds
    assert meta["parts"][0]["call_id"] == meta["parts"][1]["call_id"]
    assert token[0] is not None and token[1] == "pm" and token[2] == "chat"


def test_invalid_decisions_call_nothing_and_the_turn_still_answers(
    live_control_plane: str, user: str, orchestrator: Any, ollama: ScriptedOllama
) -> None:
    nope = json.dumps({"action": "call", "tool": "nope"})
    ollama.script = [nope, nope]
    sdk = openai.OpenAI(base_url=f"{live_control_plane}/v1", api_key=user, max_retries=0, timeout=120)
    answer = sdk.chat.completions.create(model="cynodeai.pm", messages=[{"role": "user", "content": "hello"}])
    assert answer.choices[0].message.content == REPLY_TEXT
    assert _audit_rows(orchestrator) == []
    assert len(ollama.decide_requests()) == 2
    assert "Planning failed" in ollama.reply_requests()[0]["messages"][-1]["content"]


def test_the_step_limit_stops_the_loop(
    live_control_plane: str, user: str, orchestrator: Any, ollama: ScriptedOllama
) -> None:
    ollama.script = [json.dumps({"action": "call", "tool": "help.list", "arguments": {}})] * 10
    sdk = openai.OpenAI(base_url=f"{live_control_plane}/v1", api_key=user, max_retries=0, timeout=120)
    stream = sdk.chat.completions.create(
        model="cynodeai.pm", stream=True, messages=[{"role": "user", "content": "loop"}]
    )
    text_out = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text_out  # a plain OpenAI client sees only the answer's text chunks
    rows = _audit_rows(orchestrator)
    assert [r["tool_name"] for r in rows] == ["help.list"] * 3  # CYNODE_PMA_MAX_STEPS
    assert "stopped after 3 tool calls" in ollama.reply_requests()[0]["messages"][-1]["content"]


def test_a_turn_without_a_reachable_gateway_answers_and_says_so(
    user: str, orchestrator: Any, ollama: ScriptedOllama
) -> None:
    server = LiveServer(orchestrator.app)  # not on the control plane's port: /mcp is not reachable
    try:
        sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key=user, max_retries=0, timeout=120)
        answer = sdk.chat.completions.create(model="cynodeai.pm", messages=[{"role": "user", "content": "hi"}])
    finally:
        server.stop()
    assert answer.choices[0].message.content == REPLY_TEXT
    assert ollama.decide_requests() == []
    assert "not reachable" in ollama.reply_requests()[0]["messages"][-1]["content"]
    with orchestrator.db.session() as session:
        assert session.execute(text("SELECT count(*) FROM agent_tokens WHERE revoked_at IS NULL")).scalar_one() == 0
