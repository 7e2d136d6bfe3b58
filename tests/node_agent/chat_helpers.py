"""Helpers of tests/node_agent/test_inference_chat.py: a Worker API under test, bodies, a blocked model."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from metrics_samples import families_of, value
from node_helpers import WORKER_TOKEN

from cynode_core.contract import InferenceBackend
from node_agent.executor import JobExecutor

CHAT_PATH = "/v1/worker/inference:chat"
NDJSON = "application/x-ndjson"
# What differs between two runs of one greedy generation: clocks.
TIMING_KEYS = frozenset({"created_at", "total_duration", "load_duration", "prompt_eval_duration", "eval_duration"})
# A prompt the base model continues greedily for as long as it may (no "User:" line, no end token):
# the premise of the long-generation tests, checked by ``long_run``.
LONG_PROMPT = "Count from 1 to 1000, separated by commas: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"
LONG_TOKENS = 200


@dataclass
class ChatNode:
    """A running Worker API whose executor has (or has not) an inference backend."""

    url: str
    executor: JobExecutor
    threads: int  # the Worker API server's

    def chat(
        self, body: Any, *, token: str | None = WORKER_TOKEN, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        sent = {"Authorization": f"Bearer {token}"} if token is not None else {}
        sent.update(headers or {})
        data = body if isinstance(body, bytes) else json.dumps(body)
        return requests.post(f"{self.url}{CHAT_PATH}", data=data, headers=sent, timeout=120, **kwargs)

    def open(self, body: Any) -> http.client.HTTPConnection:
        """A connection with the chat request sent and its answer not read (``getresponse`` or ``close`` it)."""
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=120)
        conn.request(
            "POST",
            CHAT_PATH,
            body=json.dumps(body),
            headers={"Authorization": f"Bearer {WORKER_TOKEN}", "Content-Type": "application/json"},
        )
        return conn

    def families(self) -> dict[str, Any]:
        return families_of(requests.get(f"{self.url}/metrics", timeout=10).text)

    def calls(self, status: int, outcome: str) -> float | None:
        return value(self.families(), "cynode_node_inference_chat_calls_total", status=str(status), outcome=outcome)

    def all_calls(self) -> float:
        family = self.families().get("cynode_node_inference_chat_calls")
        return sum(s.value for s in family.samples if s.name.endswith("_total")) if family is not None else 0.0


def chat_body(model: str, *, stream: bool, num_predict: int = 8, content: str = "What is 2+2?", **extra: Any) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "stream": stream,
        "options": {"num_predict": num_predict, "temperature": 0, "seed": 7},
        **extra,
    }


def long_body(model: str) -> dict[str, Any]:
    return chat_body(model, stream=True, num_predict=LONG_TOKENS, content=LONG_PROMPT)


def without_timings(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: val for key, val in answer.items() if key not in TIMING_KEYS}


def direct(backend: InferenceBackend, body: Any) -> requests.Response:
    """The same call straight at the backend, as the node would make it."""
    return requests.post(f"{backend.base_url}/api/chat", json=body, timeout=120)


class Blocker:
    """A long stream straight at the backend: while it runs, every other generation waits for the model."""

    def __init__(self, backend: InferenceBackend, model: str) -> None:
        parts = urlsplit(backend.base_url)
        self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=120)
        self.conn.request("POST", "/api/chat", body=json.dumps(long_body(model)))
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        self.assert_generating()

    def assert_generating(self) -> None:
        line = json.loads(self.response.readline())
        assert line["done"] is False, line

    def stop(self) -> None:
        self.response.close()  # the backend stops this generation at its next token
        self.conn.close()


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
