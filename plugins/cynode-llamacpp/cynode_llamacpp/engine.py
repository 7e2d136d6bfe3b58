"""llama.cpp behind one lock: load a GGUF, tokenize, and generate token by token with Ollama's options.

A llama.cpp context is not thread-safe, so every tokenize/generate runs in a
:meth:`LlamaEngine.session`, which holds the engine's lock; requests queue on
it (at most ``max_queue`` waiting, as Ollama's ``OLLAMA_MAX_QUEUE``). The
generation loop is ours, not ``create_completion``, so that the counts and
durations Ollama reports (prompt and eval, in nanoseconds) are measured, not
guessed, and so that stop strings are cut the way Ollama cuts them.
"""

from __future__ import annotations

import codecs
import collections
import ctypes
import logging
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cynode_core.contract import InferenceUnavailable

log = logging.getLogger(__name__)

# Ollama's api.DefaultOptions() for the sampling options we honour.
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
#: Keys of Ollama's options that tune the runner, not a request; accepted and ignored here.
RUNNER_OPTIONS = frozenset(
    {
        "num_keep",
        "repeat_last_n",
        "penalize_newline",
        "numa",
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "low_vram",
        "f16_kv",
        "vocab_only",
        "use_mmap",
        "use_mlock",
        "num_thread",
        "tfs_z",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
        "logits_all",
        "embedding_only",
    }
)
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
_GGML_LOG_WARN, _GGML_LOG_ERROR, _GGML_LOG_CONT = 3, 4, 5


class OptionError(ValueError):
    """A request option has the wrong type or value (HTTP 400)."""


class EngineBusy(Exception):
    """Too many requests wait for the model (HTTP 503, as Ollama's full queue)."""


class EngineClosed(Exception):
    """The engine was stopped or never loaded."""


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


@dataclass
class GenerationResult:
    """What one generation measured, in Ollama's units (durations in nanoseconds)."""

    done_reason: str = "stop"
    load_duration: int = 1
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0
    tokens: list[int] = field(default_factory=list)


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


class LlamaEngine:
    """One loaded GGUF model and the lock that serialises its use."""

    def __init__(self, model_path: Path, *, n_ctx: int, n_threads: int | None = None, max_queue: int = 64) -> None:
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.max_queue = max_queue
        self._llm: Any = None
        self._vocab: Any = None
        self._lock = threading.Lock()
        self._waiting_lock = threading.Lock()
        self._waiting = 0
        self._closing = False
        self.info: ModelInfo | None = None

    # ------------------------------------------------------------ life cycle

    def load(self) -> ModelInfo:
        """Load the model and run one short evaluation; ``InferenceUnavailable`` naming the file otherwise."""
        import llama_cpp

        _llama_log.install()
        _llama_log.errors.clear()
        try:
            llm = llama_cpp.Llama(
                model_path=str(self.model_path), n_ctx=self.n_ctx, n_threads=self.n_threads, verbose=False
            )
        except (ValueError, RuntimeError, OSError) as exc:
            detail = next(
                (line for line in _llama_log.errors if "gguf" in line or "error loading" in line),
                _llama_log.errors[0] if _llama_log.errors else str(exc),
            )
            raise InferenceUnavailable(f"cannot load model file {self.model_path}: {detail}") from exc
        try:
            # One evaluation proves the weights compute, and pages them in so
            # the first request is not twice as slow as the next ones.
            llm.eval(llm.tokenize(b"Hello", add_bos=True))
            llm.reset()
        except (ValueError, RuntimeError, OSError) as exc:
            llm.close()
            raise InferenceUnavailable(f"model file {self.model_path} loads but cannot evaluate: {exc}") from exc
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        metadata: dict[str, str] = dict(llm.metadata)
        self.info = ModelInfo(
            path=self.model_path,
            family=metadata.get("general.architecture", "unknown"),
            parameter_count=int(llama_cpp.llama_model_n_params(llm.model)),
            quantization_level=FILE_TYPES.get(_int_or(metadata.get("general.file_type"), -1), "unknown"),
            chat_template=metadata.get("tokenizer.chat_template") or None,
            bos_text=llm.detokenize([llm.token_bos()], special=True).decode("utf-8", errors="replace"),
            eos_text=llm.detokenize([llm.token_eos()], special=True).decode("utf-8", errors="replace"),
            n_ctx=llm.n_ctx(),
        )
        self._llm = llm
        self._closing = False
        return self.info

    def close(self, timeout: float = 30.0) -> None:
        """Free the model once the running generation (told to stop) has let go of it."""
        self._closing = True
        if not self._lock.acquire(timeout=timeout):
            log.warning("a generation still holds the model after %.0f s; leaving it loaded", timeout)
            return
        try:
            if self._llm is not None:
                self._llm.close()
            self._llm = None
        finally:
            self._lock.release()

    # ------------------------------------------------------------ sessions

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Hold the model for one request; ``EngineBusy`` when the queue is full."""
        start = time.perf_counter_ns()
        with self._waiting_lock:
            if self._waiting >= self.max_queue:
                raise EngineBusy("server busy, please try again.  maximum pending requests exceeded")
            self._waiting += 1
        try:
            self._lock.acquire()
        finally:
            with self._waiting_lock:
                self._waiting -= 1
        try:
            if self._llm is None or self._closing:
                raise EngineClosed("the model is not loaded (the backend is stopping)")
            yield Session(self, waited_ns=max(time.perf_counter_ns() - start, 1))
        finally:
            self._lock.release()


class Session:
    """The model, held by one request (see :meth:`LlamaEngine.session`)."""

    def __init__(self, engine: LlamaEngine, waited_ns: int) -> None:
        self._engine = engine
        self._llm = engine._llm
        self.waited_ns = waited_ns

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        """Tokens of ``text``; special-token text (e.g. ``<start_of_turn>``) is parsed, as Ollama's runner does."""
        if not text:
            return [self._llm.token_bos()] if add_bos else []
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def generate(self, prompt_tokens: Sequence[int], sampling: Sampling, result: GenerationResult) -> Iterator[str]:
        """Text pieces as they are generated; ``result`` is complete when the iterator ends."""
        llm = self._llm
        n_ctx = llm.n_ctx()
        tokens = list(prompt_tokens)
        if len(tokens) >= n_ctx:
            # Ollama truncates an over-long prompt rather than failing: keep BOS and the latest half-context.
            tokens = tokens[:1] + tokens[-(n_ctx // 2) :]
        budget = n_ctx - len(tokens)
        limit = budget if sampling.num_predict < 0 else min(sampling.num_predict, budget)
        result.load_duration = self.waited_ns
        result.prompt_eval_count = len(tokens)
        result.tokens = tokens
        if limit <= 0:
            result.done_reason = "length"
            return
        llm.set_seed(sampling.seed if sampling.seed is not None else random.randrange(2**31))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopMatcher(sampling.stop)
        generated: list[int] = []
        started = time.perf_counter_ns()
        first = 0
        stopped = False
        result.done_reason = "length"
        # Start from an empty KV cache: llama-cpp-python's prefix reuse trims the
        # cache to the common prefix, and with Gemma 3's sliding-window cache that
        # left stale state behind (greedy output changed with the previous prompt).
        llm.reset()
        tokens_iter = llm.generate(
            tokens,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            typical_p=sampling.typical_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
            frequency_penalty=sampling.frequency_penalty,
            presence_penalty=sampling.presence_penalty,
        )
        try:
            for token in tokens_iter:
                if not first:
                    first = time.perf_counter_ns()
                if self._engine._closing:
                    raise EngineClosed("the backend stopped during generation")
                if _is_end_of_generation(self._engine, token):
                    result.done_reason = "stop"
                    break
                generated.append(token)
                text, stopped = stops.feed(decoder.decode(llm.detokenize([token])))
                if text:
                    yield text
                if stopped:
                    result.done_reason = "stop"
                    break
                if len(generated) >= limit:
                    break
        finally:
            tokens_iter.close()
            end = time.perf_counter_ns()
            first = first or end
            result.prompt_eval_duration = max(first - started, 1)
            result.eval_count = len(generated)
            result.eval_duration = max(end - first, 1)
            result.tokens = tokens + generated
        if not stopped:
            tail = stops.flush() + decoder.decode(b"", final=True)
            if tail:
                yield tail


def _is_end_of_generation(engine: LlamaEngine, token: int) -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(engine._vocab, token))


def _int_or(value: object, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default
