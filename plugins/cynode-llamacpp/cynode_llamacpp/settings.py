"""The backend's settings: the node's inference options first, then ``CYNODE_LLAMACPP_*`` variables.

Precedence for each setting: an explicit factory option, then the process
environment, then (for the context size only) the orchestrator's ``env``
instruction, then the default. A bad value raises ``InferenceUnavailable``
naming the setting, so the node's failed config ack says what to fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cynode_core.contract import InferenceUnavailable

#: The name the bundled gemma-3-270m GGUF is served under (Ollama's name for it).
DEFAULT_MODEL_NAME = "gemma3:270m"
ENV_PREFIX = "CYNODE_LLAMACPP_"
DEFAULT_NUM_CTX = 4096
#: Per-request token cap when a request sets no ``num_predict``: a base model
#: rarely emits end-of-text, and Ollama's own default (-1) would then run to
#: the end of the context. This plays the role of ``PARAMETER num_predict`` in
#: an Ollama Modelfile.
DEFAULT_NUM_PREDICT = 256


@dataclass(frozen=True)
class LlamaCppSettings:
    """Everything the backend needs to start.

    ``model_path`` is ``None`` for the bundled model, which is assembled once
    into ``models_dir``. ``model_name`` is the node's explicit model name
    (``CYNODE_INFERENCE_MODEL``), ``selected_model`` the orchestrator's choice.
    """

    models_dir: Path
    model_path: Path | None = None
    model_name: str | None = None
    selected_model: str | None = None
    num_ctx: int = DEFAULT_NUM_CTX
    num_threads: int | None = None
    num_predict: int = DEFAULT_NUM_PREDICT
    port: int = 0

    @classmethod
    def from_options(cls, options: Mapping[str, object], environ: Mapping[str, str] | None = None) -> LlamaCppSettings:
        """Resolve the settings from the node's options and the environment."""
        env = os.environ if environ is None else environ
        instruction_env = options.get("env")
        instruction = instruction_env if isinstance(instruction_env, Mapping) else {}

        def pick(key: str, *fallbacks: object) -> object:
            value = options.get(key)
            if value is None or value == "":
                value = env.get(ENV_PREFIX + key.upper())
            for fallback in fallbacks:
                if value is None or value == "":
                    value = fallback
            return None if value == "" else value

        home = _text(options.get("home")) or env.get("CYNODE_HOME") or "~/.local/share/cynode"
        model_path = _text(pick("model_path"))
        return cls(
            models_dir=Path(home).expanduser() / "models",
            model_path=Path(model_path).expanduser() if model_path else None,
            model_name=_text(options.get("model")),
            selected_model=_text(options.get("selected_model")),
            num_ctx=_int(
                "num_ctx", pick("num_ctx", instruction.get("OLLAMA_CONTEXT_LENGTH")), DEFAULT_NUM_CTX, minimum=256
            ),
            num_threads=_optional_int("num_threads", pick("num_threads")),
            num_predict=_int("num_predict", pick("num_predict"), DEFAULT_NUM_PREDICT, minimum=-2),
            port=_int("port", pick("port"), 0, minimum=0, maximum=65535),
        )

    def served_model_name(self) -> str:
        """The one model name this backend answers to.

        The bundled model is always ``gemma3:270m`` unless the node names it
        explicitly; an operator's own GGUF takes the node's name, else the
        orchestrator's ``selected_model``, else a name made from the file name.
        """
        if self.model_name:
            return self.model_name
        if self.model_path is None:
            return DEFAULT_MODEL_NAME
        if self.selected_model:
            return self.selected_model
        return self.model_path.stem.lower().replace(" ", "-")


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _int(name: str, value: object, default: int, *, minimum: int, maximum: int | None = None) -> int:
    if value is None:
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InferenceUnavailable(
            f"llamacpp setting {name} ({ENV_PREFIX}{name.upper()}) must be an integer, got {value!r}"
        ) from None
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise InferenceUnavailable(
            f"llamacpp setting {name} ({ENV_PREFIX}{name.upper()}) must be {bounds}, got {number}"
        )
    return number


def _optional_int(name: str, value: object) -> int | None:
    if value is None:
        return None
    return _int(name, value, 0, minimum=1)
