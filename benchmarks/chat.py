"""Chat through the gateway vs the same request straight to the node's backend (goal: TTFT <= 1.2x, tokens/s >= 0.95x).

One embedded llama.cpp server with the bundled model serves both paths: the
node of a throw-away stack uses it as an existing Ollama-compatible service
(its ``ollama`` backend plugin), so the gateway path is client -> gateway ->
node Worker API ``inference:chat`` -> that server, and the floor is the same
``/api/chat`` body (fixed seed, temperature 0) sent to the server directly.
Runs alternate between the two paths; each gateway run is a new
conversation (``X-CyNodeAI-Thread`` of a fresh thread), so the model sees
the same context on both. Tokens/s counts the backend's own
``eval_count`` over the time from the first token to the end.

Run: .venv/bin/python -m benchmarks.chat [--runs 8] [--tokens 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from benchmarks.harness import percentile, report, stack

MODEL = "gemma3:270m"
PROMPT = "Write a few sentences about the history of the printing press."


def _timed(
    url: str, body: dict[str, Any], headers: dict[str, str], read: Callable[[dict[str, Any]], tuple[bool, int]]
) -> tuple[float, float]:
    """(time to first token, tokens/s) of one streamed call; ``read(piece)`` says (has text, token count or 0)."""
    started = time.perf_counter()
    first, count = None, 0
    with requests.post(url, json=body, headers=headers, stream=True, timeout=300) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            line = line.removeprefix(b"data: ")
            if not line.startswith(b"{"):
                continue
            text, tokens = read(json.loads(line))
            if first is None and text:
                first = time.perf_counter()
            count = tokens or count
    ended = time.perf_counter()
    assert first is not None
    return first - started, count / max(ended - first, 1e-9)


def direct(url: str, tokens: int) -> tuple[float, float]:
    """One streamed ``/api/chat`` straight to the backend; its ``eval_count`` is the token count."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "options": {"num_predict": tokens, "seed": 7, "temperature": 0},
    }

    def read(piece: dict[str, Any]) -> tuple[bool, int]:
        return bool(piece.get("message", {}).get("content")), int(piece.get("eval_count") or 0)

    return _timed(f"{url}/api/chat", body, {}, read)


def gateway(url: str, token: str, tokens: int) -> tuple[float, float]:
    """The same through ``POST /v1/chat/completions`` with ``stream: true`` and usage in the last chunk."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": tokens,
        "seed": 7,
        "temperature": 0,
    }

    def read(chunk: dict[str, Any]) -> tuple[bool, int]:
        choices = chunk.get("choices") or []
        text = bool(choices and choices[0].get("delta", {}).get("content"))
        return text, int((chunk.get("usage") or {}).get("completion_tokens") or 0)

    # A new conversation each time, so the model gets the same context as the direct call (no thread history).
    auth = {"Authorization": f"Bearer {token}"}
    thread = requests.post(f"{url}/v1/chat/threads", json={}, headers=auth, timeout=30).json()["id"]
    return _timed(f"{url}/v1/chat/completions", body, {**auth, "X-CyNodeAI-Thread": thread}, read)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    from cynode_llamacpp.plugin import create_backend

    backend = create_backend({"home": str(Path(tempfile.mkdtemp(prefix="cynode-bench-chat-")))})
    backend.start()
    try:
        env = {"CYNODE_INFERENCE_BACKEND": "ollama", "CYNODE_OLLAMA_URL": backend.base_url}
        with stack(nodes=1, **env) as (_s, client):
            assert client.credentials is not None
            token = client.credentials.access_token
            deadline = time.monotonic() + 120
            while MODEL not in [m["id"] for m in client.call("GET", "/v1/models")["data"]]:
                assert time.monotonic() < deadline, "the node's model was never listed"
                time.sleep(0.5)
            direct(backend.base_url, 8), gateway(_s.gateway_url, token, 8)  # warm both paths
            floor, ours = [], []
            for _ in range(args.runs):
                floor.append(direct(backend.base_url, args.tokens))
                ours.append(gateway(_s.gateway_url, token, args.tokens))
    finally:
        backend.stop()
    report(
        "chat time to first token p50",
        percentile([o[0] for o in ours], 50),
        percentile([f[0] for f in floor], 50),
        "s",
        "<= 1.2x",
    )
    report(
        "chat tokens/s p50",
        percentile([o[1] for o in ours], 50),
        percentile([f[1] for f in floor], 50),
        "tok/s",
        ">= 0.95x",
    )


if __name__ == "__main__":
    main()
