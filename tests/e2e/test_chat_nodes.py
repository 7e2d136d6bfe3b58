"""Chat through real nodes: the official ``openai`` SDK with a personal API key (issue 13, done-when items).

Real processes: an orchestrator on PostgreSQL, node agents whose ``ollama``
backend plugin uses an embedded llama.cpp server this module starts (an
existing service on loopback, the bundled gemma-3-270m), and the chat path
orchestrator -> node Worker API ``inference:chat`` -> backend. The client is
the ``openai`` package. A node killed before the first token is failed over;
one killed mid-answer ends the stream with an in-stream error and leaves the
partial turn marked ``interrupted``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import openai
import psycopg
import requests
from cynode_llamacpp.backend import LlamaCppBackend
from harness.llama import MODEL
from harness.processes import wait_until

SEED: dict[str, Any] = {"temperature": 0, "seed": 11, "max_tokens": 24}


def serving_node(cluster: Any, slug: str, orch: Any, llama: LlamaCppBackend) -> Any:
    return cluster.node(slug, orch, inference_backend="ollama", ollama_url=llama.base_url).start().wait_ready()


def models_of(orch: Any, token: str) -> list[str]:
    resp = requests.get(f"{orch.gateway}/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return [m["id"] for m in resp.json()["data"]] if resp.status_code == 200 else []


def audit_rows(database_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT outcome, node_slug, error_code FROM chat_audit_log ORDER BY created_at").fetchall()


def test_the_openai_sdk_lists_completes_streams_and_continues_with_an_api_key(
    cluster, llama, database_url: str
) -> None:  # type: ignore[no-untyped-def]
    # One step in the agent's turn, as `cynode demo` has it: the tiny model's default four were most of this
    # test's time. The step limit on the real model is tests/test_pm_agent_model.py's to prove.
    orch = cluster.orchestrator(pma_max_steps="1").start().wait_healthy()
    serving_node(cluster, "node-01", orch, llama)
    key = cluster.admin(orch).create_api_key("openai sdk")["key"]
    wait_until(lambda: MODEL in models_of(orch, key), 60, "the node's model listed")
    sdk = openai.OpenAI(base_url=f"{orch.gateway}/v1", api_key=key, max_retries=0, timeout=120)
    assert [m.id for m in sdk.models.list()] == ["cynodeai.pm", MODEL]

    messages: Any = [{"role": "user", "content": "Name a fruit."}]
    whole = sdk.chat.completions.create(model=MODEL, messages=messages, **SEED)
    assert whole.choices[0].message.content and whole.usage and whole.usage.completion_tokens > 0
    first_piece_at, pieces, started = None, [], time.monotonic()
    for chunk in sdk.chat.completions.create(
        model=MODEL, messages=messages, stream=True, extra_headers={"X-CyNodeAI-Thread": new_thread(orch, key)}, **SEED
    ):
        pieces.append(chunk.choices[0].delta.content or "")
        if first_piece_at is None and pieces[-1]:
            first_piece_at = time.monotonic() - started
    assert "".join(pieces) == whole.choices[0].message.content  # same seed, same context, same answer
    assert first_piece_at is not None and first_piece_at < time.monotonic() - started  # before the end

    pm = "".join(
        c.choices[0].delta.content or ""
        for c in sdk.chat.completions.create(
            model="cynodeai.pm", messages=[{"role": "user", "content": "Say hi."}], stream=True
        )
    )
    assert pm.strip()
    first = sdk.responses.create(model=MODEL, input="Remember: blue.", max_output_tokens=16)
    second = sdk.responses.create(
        model=MODEL, input="Which color?", previous_response_id=first.id, max_output_tokens=16
    )
    assert second.status == "completed" and second.previous_response_id == first.id
    assert {row[1] for row in audit_rows(database_url)} == {"node-01"}


def new_thread(orch: Any, token: str) -> str:
    resp = requests.post(
        f"{orch.gateway}/v1/chat/threads", json={}, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def test_a_dead_node_is_failed_over_before_the_first_token(cluster, llama, database_url: str) -> None:  # type: ignore[no-untyped-def]
    orch = cluster.orchestrator().start().wait_healthy()
    first = serving_node(cluster, "node-a", orch, llama)  # first by slug: tried first
    serving_node(cluster, "node-b", orch, llama)
    key = cluster.admin(orch).create_api_key("failover")["key"]
    wait_until(lambda: MODEL in models_of(orch, key), 60, "the nodes' model listed")
    first.kill()  # still listed as ready: the orchestrator has not noticed
    sdk = openai.OpenAI(base_url=f"{orch.gateway}/v1", api_key=key, max_retries=0, timeout=120)
    answer = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi."}], **SEED)
    assert answer.choices[0].message.content
    assert audit_rows(database_url)[-1][:2] == ("success", "node-b")


def test_a_node_dying_mid_answer_ends_the_stream_cleanly(cluster, llama, database_url: str) -> None:  # type: ignore[no-untyped-def]
    orch = cluster.orchestrator().start().wait_healthy()
    node = serving_node(cluster, "node-01", orch, llama)
    key = cluster.admin(orch).create_api_key("mid-answer")["key"]
    wait_until(lambda: MODEL in models_of(orch, key), 60, "the node's model listed")
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Count from one to one hundred."}]}
    resp = requests.post(
        f"{orch.gateway}/v1/chat/completions",
        json={**body, "stream": True, "max_tokens": 400},
        headers={"Authorization": f"Bearer {key}"},
        stream=True,
        timeout=120,
    )
    lines = resp.iter_lines()
    seen = []
    for line in lines:
        if line.startswith(b"data: {") and b'"content":"' in line and b'"content":""' not in line:
            seen.append(line)
            break
    node.kill()
    rest = [line for line in lines if line]
    assert rest[-1] == b"data: [DONE]"
    error = json.loads(rest[-2].removeprefix(b"data: "))["error"]
    assert error["code"] == "orchestrator_inference_failed" and "param" not in error
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "SELECT metadata FROM chat_messages WHERE role = 'assistant' ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
    assert stored is not None and stored[0]["interrupted"] is True
    assert audit_rows(database_url)[-1][0] == "error"
