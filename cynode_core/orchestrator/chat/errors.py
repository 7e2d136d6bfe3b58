"""Chat errors with their OpenAI ``code`` and HTTP status (chat contract 4.5)."""

from __future__ import annotations

from typing import Any

from cynode_core.contract.errors import (
    CynodeError,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    NotPermitted,
    RateLimited,
    TooLarge,
    Unavailable,
)


class ChatError(CynodeError):
    """An error of the chat surface: ``status``, OpenAI ``code`` and the offending ``param``."""

    def __init__(self, status: int, code: str, detail: str, *, param: str | None = None, **extra: Any):
        super().__init__(detail, **extra)
        self.status, self.code, self.param = status, code, param


def invalid(detail: str, param: str | None = None) -> ChatError:
    return ChatError(400, "invalid_request", detail, param=param)


# What a domain error means on the OpenAI endpoints, when it is not a ChatError.
_BY_CLASS: tuple[tuple[type[CynodeError], int, str], ...] = (
    (InvalidInput, 400, "invalid_request"),
    (NotAuthenticated, 401, "authentication_required"),
    (NotPermitted, 403, "permission_denied"),
    (NotFound, 404, "not_found"),
    (TooLarge, 413, "request_too_large"),
    (RateLimited, 429, "rate_limited"),
    (Unavailable, 503, "model_unavailable"),
)


def as_chat_error(exc: CynodeError) -> ChatError:
    if isinstance(exc, ChatError):
        return exc
    if isinstance(exc, NotAuthenticated):
        return ChatError(401, "authentication_required", "Authentication required")
    for cls, status, code in _BY_CLASS:
        if isinstance(exc, cls):
            return ChatError(status, code, exc.detail or code.replace("_", " "))
    return ChatError(500, "internal_error", "Internal error")


def error_object(error: ChatError, *, with_param: bool = True) -> dict[str, Any]:
    """``{"error": {...}}`` as OpenAI writes it; in a stream without ``param`` (contract 5.5)."""
    body: dict[str, Any] = {"message": error.detail, "type": "cynodeai_error"}
    if with_param:
        body["param"] = error.param
    body["code"] = error.code
    return {"error": body}
