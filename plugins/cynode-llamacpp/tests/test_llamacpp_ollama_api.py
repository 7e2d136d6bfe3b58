"""Ollama's HTTP API served by the embedded backend: real model, real HTTP on loopback."""

from __future__ import annotations

import json
import re
import threading

from cynode_llamacpp.backend import LlamaCppBackend
from llamacpp_http import MODEL, Call, connect, generate, long_stream

GREEDY = {"temperature": 0}


def test_root_and_version_answer(call: Call) -> None:
    root = call("GET", "/")
    assert (root.status, root.body) == (200, b"Ollama is running")
    version = call("GET", "/api/version")
    assert version.status == 200 and version.content_type.startswith("application/json")
    assert isinstance(version.json()["version"], str)


def test_tags_list_the_served_model(call: Call, backend: LlamaCppBackend) -> None:
    tags = call("GET", "/api/tags").json()
    [model] = tags["models"]
    assert model["name"] == model["model"] == MODEL
    assert model["size"] == backend.settings.models_dir.joinpath("gemma-3-270m-q4_k_m.gguf").stat().st_size
    assert re.fullmatch(r"[0-9a-f]{64}", model["digest"])
    assert model["details"]["format"] == "gguf"
    assert model["details"]["family"] == "gemma3"
    assert model["details"]["quantization_level"] == "Q4_K_M"
    assert model["details"]["parameter_size"].endswith("M")
    assert backend.models() == [MODEL]


def test_generate_without_streaming_is_one_object_with_counts(call: Call) -> None:
    reply = generate(call, "The capital of France is", options={**GREEDY, "num_predict": 16})
    assert reply.status == 200 and reply.content_type == "application/json; charset=utf-8"
    body = reply.json()
    assert body["done"] is True and body["done_reason"] == "length"
    assert body["eval_count"] == 16  # num_predict honoured
    assert body["prompt_eval_count"] >= 5
    assert body["total_duration"] >= body["prompt_eval_duration"] + body["eval_duration"]
    assert body["context"][: body["prompt_eval_count"]][0] == 2  # BOS, then the prompt's tokens


def test_completion_prompt_gives_real_text(call: Call) -> None:
    body = generate(call, "The capital of France is", options={**GREEDY, "num_predict": 12}).json()
    words = re.findall(r"[A-Za-z]{2,}", body["response"])
    assert len(words) >= 4, body["response"]
    assert "France" in body["response"] or "Paris" in body["response"]


def test_streaming_is_the_default_and_sends_ndjson(call: Call) -> None:
    request = {"model": MODEL, "prompt": "Once upon a time", "options": {**GREEDY, "num_predict": 20}}
    streamed = call("POST", "/api/generate", request)  # no "stream": Ollama streams by default
    assert streamed.status == 200 and streamed.content_type == "application/x-ndjson"
    assert streamed.headers.get("Transfer-Encoding") == "chunked"
    lines = streamed.lines()
    assert len(lines) >= 3
    assert all(line["done"] is False for line in lines[:-1])
    last = lines[-1]
    assert last["done"] is True and last["response"] == ""
    assert last["eval_count"] == 20 and last["prompt_eval_count"] > 0 and last["eval_duration"] > 0
    whole = call("POST", "/api/generate", {**request, "stream": False}).json()
    assert "".join(line["response"] for line in lines) == whole["response"]  # greedy: same text both ways


def test_chat_answers_a_question(call: Call) -> None:
    question = {"role": "user", "content": "What is 2+2? Answer with one number."}
    reply = call("POST", "/api/chat", {"model": MODEL, "stream": False, "options": GREEDY, "messages": [question]})
    body = reply.json()
    assert reply.status == 200, body
    assert body["message"]["role"] == "assistant"
    assert "4" in body["message"]["content"]
    assert body["done"] is True and body["done_reason"] == "stop" and body["eval_count"] > 0


def test_chat_streams_message_pieces(call: Call) -> None:
    reply = call(
        "POST",
        "/api/chat",
        {
            "model": MODEL,
            "options": {**GREEDY, "num_predict": 24},
            "messages": [
                {"role": "system", "content": "You answer briefly."},
                {"role": "user", "content": "Name a colour of the sky."},
            ],
        },
    )
    lines = reply.lines()
    assert reply.content_type == "application/x-ndjson"
    assert lines[-1]["done"] is True and lines[-1]["message"] == {"role": "assistant", "content": ""}
    text = "".join(line["message"]["content"] for line in lines)
    assert re.search(r"[A-Za-z]{3,}", text), text
    assert not text.startswith(" ")


def test_unknown_model_is_404_like_ollama(call: Call) -> None:
    for path, body in (
        ("/api/generate", {"model": "llama3:8b", "prompt": "hi"}),
        ("/api/chat", {"model": "llama3:8b", "messages": [{"role": "user", "content": "hi"}]}),
    ):
        reply = call("POST", path, body)
        assert reply.status == 404
        assert reply.json() == {"error": 'model "llama3:8b" not found, try pulling it first'}


def test_model_names_compare_as_ollama_compares_them(call: Call) -> None:
    reply = generate(call, "Hi", model="Gemma3:270M", options={"num_predict": 1})
    assert reply.status == 200 and reply.json()["model"] == "Gemma3:270M"  # echoed as sent
    assert call("POST", "/api/generate", {"model": "gemma3", "prompt": "Hi"}).status == 404  # gemma3:latest


def test_bad_requests_are_400_with_an_error(call: Call) -> None:
    cases = [
        b"{not json",
        b"[1, 2]",
        b"",
        {"prompt": "no model"},
        {"model": MODEL, "prompt": 5},
        {"model": MODEL, "prompt": "x", "options": {"temperature": "hot"}},
        {"model": MODEL, "prompt": "x", "options": {"stop": [1]}},
        {"model": MODEL, "prompt": "x", "stream": "yes"},
        {"model": MODEL, "prompt": "x", "raw": True, "system": "s"},
    ]
    for body in cases:
        reply = call("POST", "/api/generate", body)
        assert reply.status == 400, (body, reply.body)
        assert reply.content_type.startswith("application/json")
        assert set(reply.json()) == {"error"} and reply.json()["error"]
    assert call("POST", "/api/chat", {"model": MODEL, "messages": "hi"}).status == 400
    assert (
        call(
            "POST",
            "/api/chat",
            {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
        ).status
        == 400
    )


def test_stop_strings_cut_the_answer(call: Call) -> None:
    body = generate(call, "The capital of France is", options={**GREEDY, "num_predict": 40, "stop": ["."]}).json()
    assert body["done_reason"] == "stop"
    assert "." not in body["response"] and body["response"].strip()


def test_seed_makes_sampling_repeatable(call: Call) -> None:
    seeded = {"temperature": 1.0, "seed": 1234, "num_predict": 16}
    first = generate(call, "My favourite animal is", options=seeded).json()["response"]
    second = generate(call, "My favourite animal is", options=seeded).json()["response"]
    assert first == second


def test_empty_prompt_and_empty_messages_load_the_model(call: Call) -> None:
    generate = call("POST", "/api/generate", {"model": MODEL}).json()
    assert generate == {
        "model": MODEL,
        "created_at": generate["created_at"],
        "response": "",
        "done": True,
        "done_reason": "load",
    }
    chat = call("POST", "/api/chat", {"model": MODEL, "messages": []}).json()
    assert chat["done_reason"] == "load" and chat["message"] == {"role": "assistant", "content": ""}


def test_raw_prompt_has_no_context_and_context_continues(call: Call) -> None:
    four = {**GREEDY, "num_predict": 4}
    raw = generate(call, "One, two,", raw=True, options=four).json()
    assert "context" not in raw and raw["response"]
    first = generate(call, "One, two,", options=four).json()
    follow = generate(call, " and", context=first["context"], options=four).json()
    assert follow["prompt_eval_count"] == len(first["context"]) + 1  # the old context plus " and"


def test_unknown_paths_and_oversize_bodies(call: Call) -> None:
    assert call("GET", "/api/nothing").status == 404
    assert call("POST", "/api/pull", {"model": MODEL}).status == 404  # never pulls anything
    huge = call("POST", "/api/generate", b"{" + b" " * (17 * 1024 * 1024) + b"}")
    assert huge.status == 413 and huge.json() == {"error": "request body too large"}


def test_requests_queue_on_the_model_lock(call: Call) -> None:
    results: list[int] = []

    def ask() -> None:
        reply = generate(call, "Hello", options={"num_predict": 8})
        results.append(reply.json()["eval_count"])

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [8, 8, 8]


def test_a_client_leaving_mid_stream_frees_the_model(backend: LlamaCppBackend, call: Call) -> None:
    with long_stream(backend.base_url, num_predict=2000) as (_, first):  # hangs up after the first token
        assert first["done"] is False
    reply = generate(call, "Hi", options={"num_predict": 2})
    assert reply.status == 200 and reply.json()["eval_count"] == 2


def test_keep_alive_connection_serves_several_requests(backend: LlamaCppBackend) -> None:
    connection = connect(backend.base_url, timeout=30)
    try:
        for _ in range(2):
            connection.request(
                "POST",
                "/api/generate",
                body=json.dumps({"model": MODEL, "prompt": "Hi", "options": {"num_predict": 2}}),
            )
            lines = connection.getresponse().read().decode().splitlines()
            assert json.loads(lines[-1])["done"] is True
        connection.request("GET", "/api/tags")
        assert connection.getresponse().status == 200
    finally:
        connection.close()
