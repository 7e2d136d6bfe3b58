"""Loading a GGUF file into llama.cpp, checking that it computes, and what ``/api/tags`` says of it."""

from __future__ import annotations

import collections
import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cynode_core.contract import InferenceUnavailable

log = logging.getLogger(__name__)

# llama.cpp's file types (enum llama_ftype), as Ollama names them in /api/tags.
FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
}
_GGML_LOG_WARN, _GGML_LOG_ERROR = 3, 4


@dataclass(frozen=True)
class ModelInfo:
    """The loaded model, as ``/api/tags`` describes it."""

    path: Path
    family: str
    parameter_count: int
    quantization_level: str
    chat_template: str | None
    bos_text: str
    eos_text: str
    n_ctx: int


class _LlamaLog:
    """Routes llama.cpp's log lines to Python logging and keeps the recent errors for messages."""

    def __init__(self) -> None:
        self.errors: collections.deque[str] = collections.deque(maxlen=16)
        self._callback: Any = None

    def install(self) -> None:
        import llama_cpp

        if self._callback is not None:
            return

        @llama_cpp.llama_log_callback
        def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            line = text.decode("utf-8", errors="replace").rstrip()
            if not line:
                return
            if level == _GGML_LOG_ERROR:
                self.errors.append(line)
                log.warning("llama.cpp: %s", line)
            elif level == _GGML_LOG_WARN:
                log.debug("llama.cpp: %s", line)

        self._callback = callback  # ctypes callbacks must stay referenced
        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


_llama_log = _LlamaLog()


def load_model(model_path: Path, *, n_ctx: int, n_threads: int | None) -> tuple[Any, ModelInfo]:
    """The ``llama_cpp.Llama`` of ``model_path``, evaluated once, and its description.

    ``InferenceUnavailable`` naming the file (and llama.cpp's own reason when it
    logged one) if the file does not load or does not evaluate.
    """
    import llama_cpp

    _llama_log.install()
    _llama_log.errors.clear()
    try:
        # swa_full=False: a sliding-window layer keeps only its window (Gemma 3: 512 of 4096 cells,
        # 45 MB less resident); every generation starts from an empty cache (engine.py), so no
        # prefix reuse needs the cells beyond the window.
        llm = llama_cpp.Llama(
            model_path=str(model_path), n_ctx=n_ctx, n_threads=n_threads, swa_full=False, verbose=False
        )
    except (ValueError, RuntimeError, OSError) as exc:
        detail = next(
            (line for line in _llama_log.errors if "gguf" in line or "error loading" in line),
            _llama_log.errors[0] if _llama_log.errors else str(exc),
        )
        raise InferenceUnavailable(f"cannot load model file {model_path}: {detail}") from exc
    try:
        # One evaluation proves the weights compute, and pages them in so
        # the first request is not twice as slow as the next ones.
        llm.eval(llm.tokenize(b"Hello", add_bos=True))
        llm.reset()
    except (ValueError, RuntimeError, OSError) as exc:
        llm.close()
        raise InferenceUnavailable(f"model file {model_path} loads but cannot evaluate: {exc}") from exc
    metadata: dict[str, str] = dict(llm.metadata)
    info = ModelInfo(
        path=model_path,
        family=metadata.get("general.architecture", "unknown"),
        parameter_count=int(llama_cpp.llama_model_n_params(llm.model)),
        quantization_level=FILE_TYPES.get(_int_or(metadata.get("general.file_type"), -1), "unknown"),
        chat_template=metadata.get("tokenizer.chat_template") or None,
        bos_text=llm.detokenize([llm.token_bos()], special=True).decode("utf-8", errors="replace"),
        eos_text=llm.detokenize([llm.token_eos()], special=True).decode("utf-8", errors="replace"),
        n_ctx=llm.n_ctx(),
    )
    return llm, info


def _int_or(value: object, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default
