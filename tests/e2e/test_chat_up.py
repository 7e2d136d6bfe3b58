"""The OpenAI SDK against ``cynode up``, authenticated with a personal API key made by ``cynode token create``.

What a user does: ``cynode up`` (embedded PostgreSQL, an orchestrator and
one node with the embedded llama.cpp model), ``cynode login``, ``cynode
token create``, then any OpenAI client with that key. The official ``openai``
SDK lists the models, completes, streams with the plain loop of OpenAI's
docs on the direct and the ``cynodeai.pm`` path, gets a tool call on the
direct path, and continues a response; ``cynode chat -m`` answers too.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import openai
import requests
from harness.llama import MODEL
from harness.processes import wait_until

from e2e.test_cli import _env, cynode

SEED: dict[str, Any] = {"temperature": 0, "seed": 5, "max_tokens": 20}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_the_openai_sdk_and_cynode_chat_against_cynode_up_with_an_api_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # One step in the agent's turn, as `cynode demo` has it: the tiny model's default four took 146 of this
    # test's 178 s. The step limit on the real model is tests/test_pm_agent_model.py's to prove.
    env = _env(tmp_path, CYNODE_PMA_MAX_STEPS="1")
    gateway = f"http://{env['CYNODE_GATEWAY_LISTEN']}"
    up = subprocess.Popen([sys.executable, "-m", "cynode_core", "up"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: requests.get(f"{gateway}/readyz", timeout=2).status_code == 200, 180, "cynode up ready")
        password = (tmp_path / "home" / "admin-password").read_text().strip()
        assert cynode(env, "login", "--url", gateway, "-u", "admin", stdin=password + "\n").returncode == 0
        made = cynode(env, "token", "create", "--name", "openai-sdk", "--expires", "1d")
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()
        assert key.startswith("cyk_")

        sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0, timeout=180)
        wait_until(lambda: MODEL in [m.id for m in sdk.models.list()], 120, "the node's model listed")
        assert [m.id for m in sdk.models.list()][0] == "cynodeai.pm"

        question: Any = [{"role": "user", "content": "What is two plus two?"}]
        whole = sdk.chat.completions.create(model=MODEL, messages=question, **SEED)
        answer = whole.choices[0].message.content
        assert answer is not None and whole.usage is not None and whole.usage.completion_tokens > 0
        thread = requests.post(
            f"{gateway}/v1/chat/threads", json={}, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ).json()["id"]
        streamed = ""
        for chunk in sdk.chat.completions.create(
            model=MODEL, messages=question, stream=True, extra_headers={"X-CyNodeAI-Thread": thread}, **SEED
        ):
            streamed += chunk.choices[0].delta.content or ""
        assert streamed == answer  # same context, seed and temperature: the same tokens

        pm = "".join(
            chunk.choices[0].delta.content or ""
            for chunk in sdk.chat.completions.create(
                model="cynodeai.pm", messages=[{"role": "user", "content": "Hello"}], stream=True, max_tokens=16
            )
        )
        assert pm.strip()

        called = sdk.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice="required",
            temperature=0,
            max_tokens=48,
        )
        call = called.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert called.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
        assert isinstance(json.loads(call.function.arguments)["city"], str)

        first = sdk.responses.create(model=MODEL, input="My name is Ada.", max_output_tokens=12)
        second = sdk.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id)
        assert second.status == "completed" and second.previous_response_id == first.id

        said = cynode(env, "chat", "--model", MODEL, "-m", "Say hi.", timeout=180)
        assert said.returncode == 0, said.stderr
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.communicate()
            raise
    assert up.returncode == 0
