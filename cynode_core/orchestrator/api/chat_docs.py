"""The OpenAPI text of the OpenAI-compatible endpoints (their bodies are read by ``chat.wire``, not marshmallow)."""

from __future__ import annotations

from typing import Any

_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {
            "nullable": True,
            "oneOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "items": {"type": "object", "properties": {"type": {"type": "string"}, "text": {"type": "string"}}},
                },
            ],
        },
        "tool_calls": {"type": "array", "items": {"type": "object"}},
        "tool_call_id": {"type": "string"},
    },
}
_OPENAI_ERROR = {
    "description": "An OpenAI error object",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {
                            "message": {"type": "string"},
                            "type": {"type": "string"},
                            "param": {"type": "string", "nullable": True},
                            "code": {"type": "string"},
                        },
                    }
                },
            }
        }
    },
}


def _openai_doc(body: dict[str, Any], answer: str) -> dict[str, Any]:
    """The OpenAPI text of an OpenAI endpoint: its JSON body and its answers (errors: OpenAI error objects)."""
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "200": {"description": answer},
            **{str(code): _OPENAI_ERROR for code in (400, 401, 404, 413, 415, 429, 502, 503, 504)},
        },
        "security": [{"bearerAuth": []}],
    }


CHAT_DOC = _openai_doc(
    {
        "type": "object",
        "required": ["messages"],
        "properties": {
            "model": {"type": "string", "description": "`cynodeai.pm` (default) or a model of `GET /v1/models`"},
            "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
            "stream": {"type": "boolean"},
            "temperature": {"type": "number"},
            "top_p": {"type": "number"},
            "max_tokens": {"type": "integer"},
            "seed": {"type": "integer"},
            "tools": {"type": "array", "items": {"type": "object"}},
            "tool_choice": {},
        },
    },
    "`chat.completion`, or with `stream: true` an event stream of `chat.completion.chunk`",
)
RESPONSES_DOC = _openai_doc(
    {
        "type": "object",
        "required": ["input"],
        "properties": {
            "model": {"type": "string"},
            "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
            "previous_response_id": {"type": "string"},
            "instructions": {"type": "string"},
            "stream": {"type": "boolean"},
        },
    },
    "a `response` object, or with `stream: true` its named events",
)

MODELS_DOC: dict[str, Any] = {
    "security": [{"bearerAuth": []}],
    "responses": {"200": {"description": "An OpenAI model list"}, "401": _OPENAI_ERROR},
}
