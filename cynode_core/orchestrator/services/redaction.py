"""The one secret redactor of chat text (docs/wire_contract.md#chat-redaction; chat contract section 9).

:func:`redact` replaces each detected secret with ``SECRET_REDACTED`` and
says which kinds it found. It runs on every incoming message before it is
stored or sent to a model, on streamed and stored model output, on tool-call
arguments and previews, and on thread titles. The patterns are a list, in
order, so more can be added; each pattern's replacement keeps the words
around the secret readable (``password: SECRET_REDACTED``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

MARK = "SECRET_REDACTED"


@dataclass(frozen=True)
class SecretPattern:
    """A secret's shape; ``kind`` names it, or ``kind_of`` does from the match."""

    pattern: re.Pattern[str]
    kind: str
    replace: str = MARK
    kind_of: Callable[[re.Match[str]], str] | None = None


def _assignment_kind(match: re.Match[str]) -> str:
    word = match.group(1).lower()
    if word == "password":
        return "password"
    return "token" if word in ("token", "bearer") else "api_key"


PATTERNS: list[SecretPattern] = [
    SecretPattern(
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"), "private_key"
    ),
    SecretPattern(re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), "token"),
    SecretPattern(re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{16,}=*"), "token"),
    SecretPattern(
        re.compile(r"(?i)\b(api[_-]?key|secret|password|token|bearer)\s*[:=]\s*[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+"),
        "api_key",
        replace=r"\1: " + MARK,
        kind_of=_assignment_kind,
    ),
    SecretPattern(re.compile(r"sk-[A-Za-z0-9._-]{20,}"), "api_key"),
    SecretPattern(re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}"), "token"),
    SecretPattern(re.compile(r"\bcy(?:at|k)_[A-Za-z0-9_-]{20,}"), "token"),
    SecretPattern(re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "api_key"),
]


@dataclass(frozen=True)
class Redacted:
    text: str
    kinds: tuple[str, ...] = ()

    @property
    def applied(self) -> bool:
        return bool(self.kinds)


def redact(text: str) -> Redacted:
    """``text`` with every secret replaced, and the kinds found (sorted, each once)."""
    kinds: set[str] = set()
    for secret in PATTERNS:

        def replace(match: re.Match[str], secret: SecretPattern = secret) -> str:
            kinds.add(secret.kind_of(match) if secret.kind_of else secret.kind)
            return match.expand(secret.replace)

        text = secret.pattern.sub(replace, text)
    return Redacted(text, tuple(sorted(kinds)))
