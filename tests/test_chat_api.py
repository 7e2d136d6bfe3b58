"""The OpenAI-compatible chat surface, driven by the official ``openai`` SDK (issue 13; chat contract 3 to 5).

Real parts: the orchestrator app served over HTTP on loopback, its
PostgreSQL database, and a real model: the embedded llama.cpp backend with
the bundled gemma-3-270m, reached through ``CYNODE_CHAT_INFERENCE_URL`` (the
path through a node's Worker API is tested end to end in tests/e2e). The
client is the ``openai`` package itself, so every shape asserted here is one
the SDK really parses.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import openai
import pytest
import requests
from cynode_llamacpp.backend import LlamaCppBackend
from harness.api import ApiClient
from harness.llama import MODEL
from metrics_samples import families_of, value
from sqlalchemy import text

SEED = {"temperature": 0, "seed": 7, "max_tokens": 24}


@pytest.fixture
def settings_overrides(llama: LlamaCppBackend) -> dict[str, Any]:
    return {"chat_inference_url": llama.base_url, "inference_model": MODEL, "chat_stream_holdback_chars": 16}


@pytest.fixture
def user(api: ApiClient, orchestrator: Any) -> str:
    api.login("admin", orchestrator.secrets.admin_password, expect=200)
    return api.token


@pytest.fixture
def sdk(live_orchestrator: str, user: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_orchestrator}/v1", api_key=user, max_retries=0, timeout=120)


def test_models_lists_the_pm_surface_first_then_what_serves(sdk: openai.OpenAI) -> None:
    models = [m.id for m in sdk.models.list()]
    assert models == ["cynodeai.pm", MODEL]


def test_every_error_is_an_openai_error_object(live_orchestrator: str, user: str) -> None:
    url = f"{live_orchestrator}/v1/chat/completions"
    bare = requests.post(url, json={"messages": [{"role": "user", "content": "hi"}]}, timeout=10)
    assert bare.status_code == 401
    assert bare.json() == {
        "error": {
            "message": "Authentication required",
            "type": "cynodeai_error",
            "param": None,
            "code": "authentication_required",
        }
    }
    headers = {"Authorization": f"Bearer {user}"}
    cases: list[tuple[Any, int, str, str | None]] = [
        ({"messages": []}, 400, "invalid_request", "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, 400, "invalid_request", "messages"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            400,
            "invalid_request",
            "messages",
        ),
        ({"messages": [{"role": "system", "content": "only a system"}]}, 400, "invalid_request", "messages"),
        ({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}, 404, "model_not_found", "model"),
        ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, 400, "invalid_request", "stream"),
        ({"messages": [{"role": "user", "content": "x" * 300_000}]}, 413, "request_too_large", "messages"),
        ([1, 2], 400, "invalid_request", None),
        ({"messages": [{"role": "user", "content": "a\x00b"}]}, 400, "invalid_request", "messages"),
        (
            {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
            400,
            "invalid_request",
            "tools",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, 400, "invalid_request", "temperature"),
    ]
    for body, status, code, param in cases:
        resp = requests.post(url, json=body, headers=headers, timeout=10)
        assert resp.status_code == status, (body, resp.text)
        error = resp.json()["error"]
        assert (error["code"], error["param"], error["type"]) == (code, param, "cynodeai_error"), resp.text
    not_json = requests.post(url, data="hi", headers={**headers, "Content-Type": "text/plain"}, timeout=10)
    assert not_json.status_code == 415 and not_json.json()["error"]["code"] == "unsupported_media_type"
    bad_project = requests.post(
        url,
        json={"messages": [{"role": "user", "content": "x"}]},
        headers={**headers, "OpenAI-Project": str(uuid.uuid4())},
        timeout=10,
    )
    assert bad_project.status_code == 400 and bad_project.json()["error"]["param"] == "OpenAI-Project"


def test_a_direct_completion_whole_and_streamed_agree_and_count_real_tokens(
    sdk: openai.OpenAI, orchestrator: Any
) -> None:
    messages: Any = [{"role": "user", "content": "Name three colors."}]
    whole = sdk.chat.completions.create(model=MODEL, messages=messages, **SEED)
    answer = whole.choices[0].message.content
    assert answer and whole.choices[0].finish_reason in ("stop", "length")
    assert whole.object == "chat.completion" and whole.model == MODEL and whole.id.startswith("chatcmpl-")
    assert whole.usage is not None and whole.usage.prompt_tokens > 5 and whole.usage.completion_tokens > 0
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens

    # A new conversation: the same context again, streamed, with the loop OpenAI's docs show.
    new_thread(orchestrator)
    pieces = []
    stream = sdk.chat.completions.create(model=MODEL, messages=messages, stream=True, **SEED)
    for chunk in stream:
        pieces.append(chunk.choices[0].delta.content or "")
    assert "".join(pieces) == answer
    assert len([p for p in pieces if p]) > 1  # tokens came as they were made, not one piece

    families = families_of(requests.get(f"{sdk.base_url}".removesuffix("/v1/") + "/metrics", timeout=10).text)
    labels = {"model": MODEL, "node": "-", "route": "direct", "outcome": "success"}
    assert value(families, "cynode_chat_completions_total", **labels) == 2
    assert value(families, "cynode_chat_time_to_first_token_seconds_count", route="direct") == 2
    assert value(families, "cynode_chat_tokens_per_second_count", route="direct") == 2


def new_thread(orchestrator: Any) -> None:
    """Age every thread past the idle limit, so the next turn starts a new conversation."""
    with orchestrator.db.engine.begin() as conn:
        conn.execute(text("UPDATE chat_threads SET last_activity_at = now() - interval '1 day'"))


def test_the_pm_surface_answers_streamed_and_the_thread_keeps_the_turns(sdk: openai.OpenAI, orchestrator: Any) -> None:
    stream = sdk.chat.completions.create(
        model="cynodeai.pm", messages=[{"role": "user", "content": "Say hello. My password=hunter2"}], stream=True
    )
    text_ = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text_.strip()
    with orchestrator.db.engine.connect() as conn:
        rows = conn.execute(text("SELECT role, content, metadata FROM chat_messages ORDER BY created_at")).all()
        audit = conn.execute(text("SELECT outcome, route, model, stream, redaction_kinds FROM chat_audit_log")).all()
        title = conn.execute(text("SELECT title FROM chat_threads")).scalar_one()
    assert [r[0] for r in rows] == ["user", "assistant"]
    assert rows[0][1] == "Say hello. My password: SECRET_REDACTED"  # never the secret
    assert rows[1][1] == text_ and rows[1][2]["route"] == "pm" and rows[1][2]["model_id"] == "cynodeai.pm"
    assert title == "Say hello. My password: SECRET_REDACTED"
    assert [tuple(a) for a in audit] == [("success", "pm", "cynodeai.pm", True, ["password"])]
    assert "hunter2" not in json.dumps([list(map(str, r)) for r in rows])


def test_a_response_continues_with_previous_response_id_and_a_foreign_id_is_refused(
    sdk: openai.OpenAI, orchestrator: Any
) -> None:
    first = sdk.responses.create(model=MODEL, input="Remember the word banana.", temperature=0, max_output_tokens=16)
    assert first.id.startswith("resp_") and first.status == "completed"
    assert first.output_text and first.output[0].type == "message"
    second = sdk.responses.create(
        model=MODEL, input="Which word?", previous_response_id=first.id, temperature=0, max_output_tokens=16
    )
    assert second.previous_response_id == first.id
    with orchestrator.db.engine.connect() as conn:
        threads = conn.execute(text("SELECT DISTINCT thread_id FROM chat_messages")).all()
        ids = (
            conn.execute(
                text("SELECT metadata->>'response_id' FROM chat_messages WHERE role = 'assistant' ORDER BY created_at")
            )
            .scalars()
            .all()
        )
    assert len(threads) == 1 and ids == [first.id, second.id]
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(model=MODEL, input="x", previous_response_id="resp_" + "0" * 32)
    assert refused.value.body["param"] == "previous_response_id"  # type: ignore[index]
    events = list(sdk.responses.create(model=MODEL, input="Say hi.", stream=True, max_output_tokens=8))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds


def test_refused_requests_are_audited_and_a_third_turn_at_once_is_429(
    live_orchestrator: str, user: str, orchestrator: Any
) -> None:
    url = f"{live_orchestrator}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {user}"}
    assert (
        requests.post(
            url, json={"model": "nope", "messages": [{"role": "user", "content": "x"}]}, headers=headers, timeout=10
        ).status_code
        == 404
    )
    # Two slow streams hold the user's two places; the third is refused at once.
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count to fifty."}],
        "stream": True,
        "max_tokens": 400,
    }
    held = [requests.post(url, json=body, headers=headers, stream=True, timeout=60) for _ in range(2)]
    try:
        for resp in held:
            assert resp.status_code == 200
            next(resp.iter_lines())
        third = requests.post(url, json=body, headers=headers, timeout=10)
        assert third.status_code == 429 and third.headers["Retry-After"] == "5"
        assert third.json()["error"]["code"] == "rate_limited"
    finally:
        for resp in held:
            resp.close()  # the client leaves: the turns end as canceled and free their places
    deadline = time.monotonic() + 30
    while True:
        with orchestrator.db.engine.connect() as conn:
            rows = conn.execute(text("SELECT outcome, error_code FROM chat_audit_log ORDER BY created_at")).all()
        if len(rows) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    outcomes = sorted(tuple(r) for r in rows)
    refused = [o for o in outcomes if o[0] == "error"]
    held = [o for o in outcomes if o[0] != "error"]
    assert refused == [("error", "model_not_found"), ("error", "rate_limited")], outcomes
    # A held turn ends canceled when the client leaves first; the tiny model may have finished its answer
    # before that (it may stop well short of max_tokens), and then it is a success: both are audited.
    assert len(held) == 2 and set(held) <= {("canceled", "request_canceled"), ("success", None)}, outcomes
    # The places are free again.
    again = requests.post(url, json={**body, "stream": False, "max_tokens": 4}, headers=headers, timeout=60)
    assert again.status_code == 200, again.text


WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_function_calling_on_the_direct_path_whole_streamed_and_round_trip(
    sdk: openai.OpenAI, orchestrator: Any
) -> None:
    asked: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    forced: Any = {"type": "function", "function": {"name": "get_weather"}}
    whole = sdk.chat.completions.create(
        model=MODEL, messages=asked, tools=[WEATHER], tool_choice=forced, temperature=0, max_tokens=48
    )
    assert whole.choices[0].finish_reason == "tool_calls"
    (call,) = whole.choices[0].message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments["city"], str)

    new_thread(orchestrator)
    deltas, reasons = [], []
    for chunk in sdk.chat.completions.create(
        model=MODEL, messages=asked, tools=[WEATHER], tool_choice=forced, temperature=0, max_tokens=48, stream=True
    ):
        for choice in chunk.choices:
            deltas.extend(choice.delta.tool_calls or [])
            reasons.append(choice.finish_reason)
    assert [(d.index, d.function.name) for d in deltas if d.function] == [(0, "get_weather")]
    assert json.loads(deltas[0].function.arguments) == arguments  # type: ignore[union-attr,arg-type]
    assert reasons[-1] == "tool_calls"

    # The result goes back with the call; the answer is text.
    round_trip: Any = [
        *asked,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 21, "sky": "clear"}'},
    ]
    answer = sdk.chat.completions.create(
        model=MODEL, messages=round_trip, tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=24
    )
    assert answer.choices[0].finish_reason in ("stop", "length") and not answer.choices[0].message.tool_calls
    assert answer.choices[0].message.content
