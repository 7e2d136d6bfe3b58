"""A grammar applied to generation, checking the likeliest tokens first and the whole vocabulary only when none fits.

llama-cpp-python's ``Llama.generate(grammar=...)`` runs llama.cpp's grammar
sampler over every token of the vocabulary at every step: for Gemma 3's 262k
tokens that made each token three to five times slower. llama.cpp's own
server avoids most of that work (``common_sampler_sample`` samples first and
checks only the chosen token); :class:`GrammarConstraint` does the like as the
first logits processor of llama-cpp-python's sampler chain: it asks the grammar
about the ``TOP`` highest-scoring tokens only and, when some fit, leaves just
those; only when none fits does the grammar judge the whole vocabulary. The
greedy choice is the same as with the full check (the best token that fits is
among the top ones whenever one of them fits); sampling draws from the fitting
tokens among the top ``TOP``, as Ollama's default ``top_k`` of 40 would anyway.
The grammar follows the generation through :meth:`GrammarConstraint.accept`.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from cynode_llamacpp.grammars import GrammarError

TOP = 64
_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


class GrammarConstraint:
    """One generation's grammar state (llama.cpp's grammar sampler, used for its checks only)."""

    def __init__(self, vocab: Any, grammar: str) -> None:
        import llama_cpp

        self._sampler = None
        try:
            encoded = grammar.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (a "\ud800" escape) in a schema's pattern
            raise GrammarError("the schema holds text that is not valid Unicode") from None
        self._sampler = llama_cpp.llama_sampler_init_grammar(vocab, encoded, b"root")
        if not self._sampler:  # adding a refused grammar to a chain would crash the process
            raise GrammarError("the schema gives a grammar llama.cpp cannot use (e.g. left recursion)")

    def __call__(self, input_ids: Any, scores: np.ndarray) -> np.ndarray:
        """Scores with every token the grammar does not allow next at minus infinity (a logits processor)."""
        count = len(scores)
        top = np.argpartition(scores, count - TOP)[count - TOP :] if count > TOP else np.arange(count)
        fitting = top[np.isfinite(self._judge(top, scores[top]))]
        if fitting.size:
            kept = np.full_like(scores, -np.inf)
            kept[fitting] = scores[fitting]
            return kept
        return self._judge(np.arange(count), scores)

    def accept(self, token: int) -> None:
        """Move the grammar past ``token``, which it allowed."""
        import llama_cpp

        llama_cpp.llama_sampler_accept(self._sampler, token)

    def close(self) -> None:
        """Free llama.cpp's sampler (again: a no-op)."""
        if self._sampler:
            import llama_cpp

            llama_cpp.llama_sampler_free(self._sampler)
            self._sampler = None

    __del__ = close  # a generation that never started still frees it

    def _judge(self, ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """``logits`` with the grammar's verdict on ``ids``: minus infinity where it refuses the token."""
        import llama_cpp

        data = np.zeros(len(ids), dtype=_TOKEN_DATA)
        data["id"], data["logit"] = ids, logits
        array = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(llama_cpp.llama_token_data_p), size=len(ids), selected=-1, sorted=False
        )
        llama_cpp.llama_sampler_apply(self._sampler, ctypes.byref(array))
        return data["logit"]
