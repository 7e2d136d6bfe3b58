"""A client of the gateway's OpenAI-compatible chat endpoints, for ``cynode chat`` and ``cynode models``.

It speaks the same ``/v1/models`` and ``/v1/chat/completions`` every OpenAI
client uses, with the caller's stored login (``GatewayClient``: refreshed on
401), and opts in to cynode's named stream events (``X-CyNodeAI-Events``) so
it can show heartbeats and redaction amendments. Only the new user message is
sent: the server keeps the conversation in a thread (``X-CyNodeAI-Thread``
picks one).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests

from cynode_core.client import ApiError, GatewayClient, parse_events

PM_MODEL = "cynodeai.pm"


@dataclass(frozen=True)
class ChatEvent:
    """What a streamed answer brings.

    ``text`` (a delta), ``waiting`` (seconds), ``amended`` (the whole text), and the agent's steps:
    ``tool`` (``text`` is ``<tool> <arguments>``) and ``tool_result`` (``<tool>: <preview>``).
    """

    kind: str
    text: str = ""
    seconds: int = 0


def _error(resp: requests.Response) -> ApiError:
    try:
        body = resp.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            return ApiError(resp.status_code, str(error.get("code") or "error"), str(error.get("message") or ""))
        return ApiError(resp.status_code, str(body.get("title", "error")), str(body.get("detail", "")))
    except (ValueError, AttributeError):
        return ApiError(resp.status_code, "error", resp.text[:200])


class ChatClient:
    def __init__(self, gateway: GatewayClient, *, model: str = PM_MODEL, thread_id: str | None = None):
        self.gateway = gateway
        self.model = model
        self.thread_id = thread_id

    def models(self) -> list[str]:
        resp = self.gateway.request("GET", "/v1/models")
        if resp.status_code != 200:
            raise _error(resp)
        return [m["id"] for m in resp.json().get("data", [])]

    def new_thread(self) -> str:
        resp = self.gateway.request("POST", "/v1/chat/threads", json={})
        if resp.status_code != 201:
            raise _error(resp)
        self.thread_id = resp.json()["id"]
        return self.thread_id

    def stream(self, text: str) -> Iterator[ChatEvent]:
        """Send ``text`` as the next user message; the answer's events as they come."""
        headers = {"X-CyNodeAI-Events": "true", "Accept": "text/event-stream"}
        if self.thread_id:
            headers["X-CyNodeAI-Thread"] = self.thread_id
        body: dict[str, Any] = {"model": self.model, "messages": [{"role": "user", "content": text}], "stream": True}
        resp = self.gateway.request("POST", "/v1/chat/completions", json=body, headers=headers, stream=True)
        with resp:
            if resp.status_code != 200:
                raise _error(resp)
            for event in parse_events(resp.iter_content(chunk_size=None)):
                if event.data == "[DONE]":
                    return
                yield from _chat_events(event.event, event.data)

    def complete(self, text: str) -> str:
        """The whole answer to ``text`` (read from the stream)."""
        answer = ""
        for event in self.stream(text):
            if event.kind == "text":
                answer += event.text
            elif event.kind == "amended":
                answer = event.text
        return answer


def _chat_events(name: str, data: str) -> Iterator[ChatEvent]:
    payload = json.loads(data)
    if name == "cynodeai.heartbeat":
        yield ChatEvent("waiting", seconds=int(payload.get("elapsed_s", 0)))
    elif name == "cynodeai.tool_call":
        yield ChatEvent("tool", text=f"{payload.get('name', '')} {payload.get('arguments', '')}")
    elif name == "cynodeai.tool_progress" and payload.get("state") == "result":
        yield ChatEvent("tool_result", text=f"{payload.get('tool', '')}: {payload.get('preview', '')}")
    elif name == "cynodeai.amendment":
        yield ChatEvent("amended", text=str(payload.get("content", "")))
    elif name == "message":
        if isinstance(payload.get("error"), dict):
            error = payload["error"]
            raise ApiError(502, str(error.get("code", "error")), str(error.get("message", "")))
        for choice in payload.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                yield ChatEvent("text", text=content)
