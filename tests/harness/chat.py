"""What the tests know of the OpenAI-compatible routes (docs/wire_contract.md#chat)."""

from __future__ import annotations

from typing import Any

# Their errors are OpenAI error objects, not problem details.
OPENAI_PATHS = ("/v1/models", "/v1/chat/completions", "/v1/responses")


def no_model_here(path: str, response: Any) -> bool:
    """A chat route's documented 503 ``model_unavailable``: no node serves a model in this test."""
    if path not in OPENAI_PATHS or response.status_code != 503:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and error.get("code") == "model_unavailable"
