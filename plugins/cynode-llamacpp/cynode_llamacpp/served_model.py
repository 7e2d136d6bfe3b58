"""The one model a server answers to, and how Ollama writes its fields (``/api/tags``, times, sizes)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cynode_core.contract import normalize_model_name
from cynode_llamacpp.model_loader import ModelInfo


@dataclass(frozen=True)
class ServedModel:
    """The one model the server answers to, with what ``/api/tags`` lists about it."""

    name: str
    info: ModelInfo
    size: int
    digest: str
    modified_at: str

    def matches(self, requested: str) -> bool:
        return normalize_model_name(requested) == normalize_model_name(self.name)

    def tag(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": self.modified_at,
            "size": self.size,
            "digest": self.digest,
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": self.info.family,
                "families": [self.info.family],
                "parameter_size": human_number(self.info.parameter_count),
                "quantization_level": self.info.quantization_level,
            },
        }


def human_number(count: int) -> str:
    """Ollama's ``format.HumanNumber``: 268098176 -> ``268.10M``."""
    for limit, unit, digits in ((1_000_000_000, "B", 1), (1_000_000, "M", 2), (1_000, "K", 0)):
        if count >= limit:
            value = count / limit
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.{digits}f}{unit}"
    return str(count)


def now_rfc3339() -> str:
    """``created_at`` as Ollama writes it (UTC, RFC 3339 with fractional seconds)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
