"""What a job may ask of the node's model: the rules the inference proxy pins every model call to.

A sandbox reaches the backend only through its proxy (``proxy_handler``),
and the backend is shared by every job on the node. So before a request
that names a model is forwarded, :func:`pin_request` rewrites its JSON body
(docs/wire_contract.md#inference-proxy, decisions.md Inference 6):

- the model must be one of the node's models (compared as Ollama compares
  names, ``normalize_model_name``) and is forwarded under the node's own
  spelling; none or an empty one means the node's first model;
- ``keep_alive`` is dropped, so the backend's own setting always applies;
- ``options.num_ctx`` and ``options.num_predict`` must be numbers of at
  least 1 and are lowered to the node's bounds.

A body that breaks a rule raises ``InvalidInput`` (the proxy answers 400) or,
for a model the node does not serve, ``NotPermitted`` (403); nothing else
escapes, whatever the bytes. The body forwarded is always the one checked,
re-encoded here, so the backend's JSON decoder cannot read it differently.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cynode_core.contract import normalize_model_name
from cynode_core.contract.errors import InvalidInput, NotPermitted

DEFAULT_MAX_CTX = 8192
DEFAULT_MAX_PREDICT = 4096

# The proxy's POST endpoints; each body names a model (inference_proxy.ALLOWED_ENDPOINTS
# lists what is forwarded at all; a test keeps the two in step).
MODEL_ENDPOINTS = frozenset({"/api/show", "/api/generate", "/api/chat", "/api/embed", "/api/embeddings"})
# "model" everywhere; "name" is the older spelling /api/show still reads.
_MODEL_FIELDS = ("model", "name")
_PINNED_FIELDS = frozenset({*_MODEL_FIELDS, "keep_alive", "options"})
_BOUNDED_OPTIONS = frozenset({"num_ctx", "num_predict"})
# How much of a refused name an error message repeats.
_SHOWN_CHARS = 80


@dataclass(frozen=True)
class InferencePolicy:
    """One node's limits: the models a job may name (the first is the default) and two option bounds."""

    models: tuple[str, ...]
    max_ctx: int = DEFAULT_MAX_CTX
    max_predict: int = DEFAULT_MAX_PREDICT

    def model_for(self, requested: str | None) -> str:
        """The node's name for ``requested``: its first model when none or empty, else the one it names."""
        if requested is None or not requested.strip():
            if not self.models:
                raise NotPermitted("this node serves no model to jobs")
            return self.models[0]
        wanted = normalize_model_name(requested)
        for name in self.models:
            if normalize_model_name(name) == wanted:
                return name
        served = ", ".join(self.models) or "none"
        raise NotPermitted(
            f"model {requested[:_SHOWN_CHARS]!r} is not served to jobs on this node (it serves: {served})"
        )


def node_models(configured: Iterable[object], served: Iterable[str]) -> tuple[str, ...]:
    """The models a node's jobs may name: the ones configured for it, else every one the backend served at start.

    ``configured`` holds the node's ``inference_model`` and the
    orchestrator's ``selected_model`` (either may be unset); a backend
    start checks that they are served. Names that normalise alike count once.
    """
    names = [str(name).strip() for name in configured if name is not None and str(name).strip()]
    if not names:
        names = [name for name in served if name.strip()]
    unique: dict[str, str] = {}
    for name in names:
        unique.setdefault(normalize_model_name(name), name)
    return tuple(unique.values())


def pin_request(path: str, body: bytes, policy: InferencePolicy) -> bytes:
    """The body to forward for a request to ``path``: unchanged off ``MODEL_ENDPOINTS``, pinned on them.

    Raises ``InvalidInput`` or ``NotPermitted`` with a sentence for the job.
    """
    if path not in MODEL_ENDPOINTS:
        return body
    request = _json_object(body)
    _refuse_lookalikes(request, _PINNED_FIELDS, "")
    model, name = (_optional_text(request, field) for field in _MODEL_FIELDS)
    request["model"] = policy.model_for(model if model and model.strip() else name)
    if name and name.strip():
        request["name"] = policy.model_for(name)
    # keep_alive is dropped rather than screened: besides 0 or "0s" (unload now),
    # any short duration ("1ms") unloads the model soon after this request, and
    # a negative one pins it in memory for good. Whether the shared model stays
    # loaded is the operator's choice (the backend's own setting), not a job's.
    request.pop("keep_alive", None)
    options = request.get("options")
    if options is not None:
        if not isinstance(options, dict):
            raise InvalidInput("options must be a JSON object")
        _refuse_lookalikes(options, _BOUNDED_OPTIONS, "options.")
        for key, limit in (("num_ctx", policy.max_ctx), ("num_predict", policy.max_predict)):
            if key in options:
                options[key] = _bounded(f"options.{key}", options[key], limit)
    return _encode(request)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        # NaN and Infinity are not JSON; Python's decoder would take them.
        value = json.loads(body.decode("utf-8"), parse_constant=_not_json)
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, an integer over 4300 digits, too deep
        raise InvalidInput("request body must be a JSON object") from None
    if not isinstance(value, dict):
        raise InvalidInput("request body must be a JSON object")
    return value


def _optional_text(request: dict[str, Any], field: str) -> str | None:
    value = request.get(field)
    if value is None or isinstance(value, str):
        return value
    raise InvalidInput(f"{field} must be a string")


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _refuse_lookalikes(fields: dict[str, Any], names: frozenset[str], prefix: str) -> None:
    """Refuse a key that is not one of ``names`` but folds to one (``Model``, ``KEEP_ALIVE``).

    Ollama decodes bodies with Go's ``encoding/json``, which matches field
    names without regard to case (the Kelvin sign counts as ``k``, the long
    s as ``s``): such a key would reach a field this module checks under its
    exact name, and a later one would win. Option keys are matched exactly
    by Ollama today; they get the same rule so the two levels read alike.
    """
    for key in fields:
        folded = key.casefold()
        if folded in names and key != folded:
            raise InvalidInput(f"field {prefix}{key[:_SHOWN_CHARS]!r} must be spelt {prefix}{folded}")


def _bounded(label: str, value: object, limit: int) -> int:
    """``value`` as a whole number from 1 to ``limit``; larger ones are lowered to ``limit``.

    0 is refused with the negatives: Ollama's runner reads a ``num_predict``
    of 0 as no limit, and llama.cpp a context of 0 as the model's full one.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # the last: NaN
        raise InvalidInput(f"{label} must be a number")
    if value < 1:
        raise InvalidInput(f"{label} must be at least 1 (this node allows up to {limit})")
    if value >= limit:  # before int(): an infinite float has no integer
        return limit
    return int(value)  # a fraction is cut off, as Ollama's decoder does


def _encode(request: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(request, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:  # a number beyond a double, such as 1e400, decoded as infinity
        raise InvalidInput("request body holds a number out of range") from None
    except RecursionError:
        raise InvalidInput("request body is nested too deeply") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape: send it escaped again
        return json.dumps(request, allow_nan=False, separators=(",", ":")).encode("ascii")
