"""One request's generation options, read as Ollama reads them, and cutting text at its stop strings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Ollama's api.DefaultOptions() for the sampling options we honour. The keys
# that tune Ollama's runner rather than a request (num_ctx, num_thread,
# mirostat, ...) are ignored, as every key not named here is.
OLLAMA_DEFAULTS: dict[str, float] = {
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repeat_penalty": 1.1,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}


class OptionError(ValueError):
    """A request option has the wrong type or value (HTTP 400)."""


@dataclass(frozen=True)
class Sampling:
    """One request's generation options, Ollama's defaults filled in."""

    num_predict: int
    temperature: float = OLLAMA_DEFAULTS["temperature"]
    top_k: int = int(OLLAMA_DEFAULTS["top_k"])
    top_p: float = OLLAMA_DEFAULTS["top_p"]
    min_p: float = OLLAMA_DEFAULTS["min_p"]
    typical_p: float = OLLAMA_DEFAULTS["typical_p"]
    repeat_penalty: float = OLLAMA_DEFAULTS["repeat_penalty"]
    presence_penalty: float = OLLAMA_DEFAULTS["presence_penalty"]
    frequency_penalty: float = OLLAMA_DEFAULTS["frequency_penalty"]
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @classmethod
    def from_request(cls, options: object, *, default_num_predict: int, extra_stop: Sequence[str] = ()) -> Sampling:
        """Read Ollama's ``options`` object; unknown keys are ignored as Ollama ignores them."""
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            raise OptionError("options must be a JSON object")
        values: dict[str, Any] = {"num_predict": _number(options, "num_predict", int, default_num_predict)}
        for key, default in OLLAMA_DEFAULTS.items():
            kind = int if key == "top_k" else float
            values[key] = _number(options, key, kind, default)
        seed = _number(options, "seed", int, -1)
        values["seed"] = seed if seed >= 0 else None
        stop = options.get("stop")
        if stop is None:
            stops: list[str] = []
        elif isinstance(stop, str):
            stops = [stop]
        elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
            stops = list(stop)
        else:
            raise OptionError("option stop must be a list of strings")
        values["stop"] = tuple(dict.fromkeys(s for s in [*stops, *extra_stop] if s))
        return cls(**values)


def _number(options: Mapping[str, object], key: str, kind: type, default: float) -> Any:
    value = options.get(key)
    if value is None:
        return kind(default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OptionError(f"option {key} must be a number, got {type(value).__name__}")
    if kind is int and value != int(value):
        raise OptionError(f"option {key} must be an integer, got {value}")
    return kind(value)


class StopMatcher:
    """Cuts generated text at the first stop string, holding back what could still become one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """The text that is safe to emit now, and whether a stop string was reached."""
        self._pending += text
        if not self._stops:
            out, self._pending = self._pending, ""
            return out, False
        hits = [self._pending.find(stop) for stop in self._stops if stop in self._pending]
        if hits:
            out = self._pending[: min(hits)]
            self._pending = ""
            return out, True
        hold = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(self._pending)), hold, -1):
                if self._pending.endswith(stop[:size]):
                    hold = size
                    break
        cut = len(self._pending) - hold
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out
