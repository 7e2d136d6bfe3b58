"""llama.cpp behind one lock: the loaded model, tokenize, and generate token by token with Ollama's options.

Loading is :mod:`cynode_llamacpp.model_loader`'s, reading a request's options
:mod:`cynode_llamacpp.sampling`'s. A llama.cpp context is not thread-safe, so
every tokenize/generate runs in a :meth:`LlamaEngine.session`, which holds
the engine's lock; requests queue on it (at most ``max_queue`` waiting, as
Ollama's ``OLLAMA_MAX_QUEUE``). The generation loop is ours, not
``create_completion``, so that the counts and durations Ollama reports
(prompt and eval, in nanoseconds) are measured, not guessed, and so that
stop strings are cut the way Ollama cuts them. A generation may be
constrained by a grammar (:mod:`cynode_llamacpp.grammars`), which llama.cpp
applies before sampling each token.
"""

from __future__ import annotations

import codecs
import logging
import random
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cynode_llamacpp.model_loader import ModelInfo, load_model
from cynode_llamacpp.sampling import Sampling, StopMatcher

if TYPE_CHECKING:
    from cynode_llamacpp.constrained import GrammarConstraint

log = logging.getLogger(__name__)


class EngineBusy(Exception):
    """Too many requests wait for the model (HTTP 503, as Ollama's full queue)."""


class EngineClosed(Exception):
    """The engine was stopped or never loaded."""


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
        """Load the model (see :func:`load_model`); ``InferenceUnavailable`` naming the file otherwise."""
        import llama_cpp

        llm, info = load_model(self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads)
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self.info = info
        self._llm = llm
        self._closing = False
        return info

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
        return list(self._llm.tokenize(_utf8(text), add_bos=add_bos, special=True))

    def grammar(self, text: str) -> GrammarConstraint:
        """``text`` (GBNF, rule ``root``) as a grammar for :meth:`generate`; ``GrammarError`` if llama.cpp refuses."""
        from cynode_llamacpp.constrained import GrammarConstraint

        return GrammarConstraint(self._engine._vocab, text)

    def generate(
        self,
        prompt_tokens: Sequence[int],
        sampling: Sampling,
        result: GenerationResult,
        grammar: GrammarConstraint | None = None,
    ) -> Iterator[str]:
        """Text pieces as they are generated; ``result`` is complete when the iterator ends.

        ``grammar`` (from :meth:`grammar`), when given, constrains every token.
        """
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
            if grammar is not None:
                grammar.close()
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
            logits_processor=None if grammar is None else [grammar],
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
                if grammar is not None:
                    grammar.accept(token)
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
            if grammar is not None:
                grammar.close()
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


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate (a ``\\ud800`` escape in the request) becomes U+FFFD, as in Go's decoder."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return re.sub("[\ud800-\udfff]", "\ufffd", text).encode("utf-8")


def _is_end_of_generation(engine: LlamaEngine, token: int) -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(engine._vocab, token))
