"""Reaching a model for a chat turn: which node, the call, its NDJSON pieces, and failover.

A direct model (or the model behind ``cynodeai.pm``) is served by a node's
Worker API ``POST /v1/worker/inference:chat`` (docs/wire_contract.md#worker-inference-chat),
which relays an Ollama ``/api/chat`` body to the node's backend and streams
its NDJSON back; or by ``CYNODE_CHAT_INFERENCE_URL``, an Ollama-compatible
server, when it is set. The orchestrator always asks for a stream, so one
path serves streamed and whole answers, notices a dead node at once and can
stop generation by closing the call.

:class:`ModelRouter` lists what can answer (``GET /v1/models``), picks the
node with the ``cynode_select_inference_node`` hook and retries a transient
failure (refused or reset connection, connect timeout, HTTP 5xx) on the next
node, before the first piece only: 3 attempts, 0.5 s then 1 s apart (chat
contract 4.3). A failure after the first piece ends the turn.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import requests

from cynode_core.contract import InferenceInfo, NodeCandidate, normalize_model_name
from cynode_core.contract.job import without_nul
from cynode_core.orchestrator.chat.errors import ChatError
from cynode_core.orchestrator.db import Database
from cynode_core.orchestrator.node_client import NodeEndpoint
from cynode_core.orchestrator.services.nodes import list_nodes, worker_tokens
from cynode_core.orchestrator.settings import OrchestratorSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

ATTEMPTS = 3
BACKOFF = (0.5, 1.0)
CONNECT_TIMEOUT = 5.0
# The most one NDJSON line of a backend may hold (a tool call's arguments, a long token run).
MAX_LINE_BYTES = 1024 * 1024

_session = requests.Session()


@dataclass(frozen=True)
class Piece:
    """One NDJSON line of an Ollama chat stream, read."""

    content: str = ""
    thinking: str = ""
    tool_calls: tuple[dict[str, Any], ...] = ()
    done: bool = False
    done_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @classmethod
    def from_json(cls, line: dict[str, Any]) -> Piece:
        found = line.get("message")
        message: dict[str, Any] = found if isinstance(found, dict) else {}
        content, thinking = message.get("content"), message.get("thinking")
        calls = message.get("tool_calls")
        return cls(
            content=without_nul(content) if isinstance(content, str) else "",
            thinking=without_nul(thinking) if isinstance(thinking, str) else "",
            tool_calls=tuple(c for c in calls if isinstance(c, dict)) if isinstance(calls, list) else (),
            done=line.get("done") is True,
            done_reason=str(line.get("done_reason") or ""),
            prompt_tokens=_count(line.get("prompt_eval_count")),
            completion_tokens=_count(line.get("eval_count")),
        )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


@dataclass(frozen=True)
class Target:
    """Where one call goes: a node's Worker API (``node_slug`` set) or the configured URL."""

    url: str
    headers: dict[str, str]
    node_id: str = ""
    node_slug: str = ""


# A node that serves chat: what the hook sees, the model names it serves, where to call it.
ServingNode = tuple[NodeCandidate, set[str], NodeEndpoint | None]
# How long the list of nodes that serve chat is reused (a turn asks for it twice: the model check and the call).
NODES_TTL = 2.0


class _Recent(Generic[T]):
    """A value read again at most every :data:`NODES_TTL` seconds."""

    def __init__(self, read: Callable[[], T]) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._at: float | None = None
        self._value: T | None = None

    def get(self) -> T:
        with self._lock:
            if self._at is not None and time.monotonic() - self._at < NODES_TTL:
                return self._value  # type: ignore[return-value]
        value = self._read()
        with self._lock:
            self._at, self._value = time.monotonic(), value
        return value


class Transient(Exception):
    """A failure worth trying again on another node (before the first piece)."""


@dataclass
class ModelRouter:
    """The chat surface's way to its models."""

    db: Database
    settings: OrchestratorSettings
    select_node: Callable[..., NodeCandidate | None]
    cipher: Any
    _in_flight: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _nodes_seen: _Recent[list[ServingNode]] = field(init=False)
    _url_seen: _Recent[list[str]] = field(init=False)

    def __post_init__(self) -> None:
        self._nodes_seen = _Recent(self._read_nodes)
        self._url_seen = _Recent(self._read_url_models)

    # -- what can answer ---------------------------------------------------------------------

    def _nodes(self) -> list[ServingNode]:
        """The dispatchable nodes that serve chat, read again at most every :data:`NODES_TTL` seconds."""
        return self._nodes_seen.get()

    def _read_nodes(self) -> list[ServingNode]:
        out = []
        with self.db.session() as session:
            rows = list_nodes(session, only_dispatchable=True)
            tokens = worker_tokens(session, self.cipher, [r.id for r in rows])
        for row in rows:
            inference = row.capability.get("inference")
            worker_api = row.capability.get("worker_api")
            if not isinstance(inference, dict) or not isinstance(worker_api, dict):
                continue
            if worker_api.get("inference_chat") is not True:
                continue
            models = inference.get("available_models")
            names = (
                {normalize_model_name(m) for m in models if isinstance(m, str)} if isinstance(models, list) else set()
            )
            endpoint = NodeEndpoint(row.url, tokens[row.id]) if row.url and tokens.get(row.id) else None
            candidate = NodeCandidate(str(row.id), row.slug, row.max_concurrency, row.running, row.capability)
            out.append((candidate, names, endpoint))
        return out

    def _url_models(self) -> list[str]:
        """The configured URL's models, asked again at most every :data:`NODES_TTL` seconds (not on every turn)."""
        return self._url_seen.get()

    def _read_url_models(self) -> list[str]:
        url = self.settings.chat_inference_url
        if not url:
            return []
        try:
            resp = _session.get(f"{url.rstrip('/')}/api/tags", timeout=(CONNECT_TIMEOUT, 5.0), allow_redirects=False)
            resp.raise_for_status()
            return [
                m["name"]
                for m in resp.json().get("models", [])
                if isinstance(m, dict) and isinstance(m.get("name"), str)
            ]
        except (requests.RequestException, ValueError, AttributeError) as exc:
            log.warning("chat inference URL does not list its models: %s", type(exc).__name__)
            return []

    def served_models(self) -> list[str]:
        """Every model a ready node (or the configured URL) serves, by name, each once, sorted."""
        if self.settings.chat_inference_url:
            names = self._url_models()
        else:
            names = sorted({name for _, served, _ in self._nodes() for name in served})
        seen, out = set(), []
        for name in names:
            if normalize_model_name(name) not in seen:
                seen.add(normalize_model_name(name))
                out.append(name)
        return out

    def serves(self, model: str) -> bool:
        wanted = normalize_model_name(model)
        return any(normalize_model_name(m) == wanted for m in self.served_models())

    # -- one call ----------------------------------------------------------------------------

    def _targets(self, model: str, user_id: str, context_chars: int) -> Iterator[Target]:
        """Where to try, in order: the configured URL, or nodes chosen one by one by the hook."""
        url = self.settings.chat_inference_url
        if url:
            for _ in range(ATTEMPTS):
                yield Target(f"{url.rstrip('/')}/api/chat", {})
            return
        wanted = normalize_model_name(model)
        tried: set[str] = set()
        for _ in range(ATTEMPTS):
            nodes = [(c, e) for c, served, e in self._nodes() if wanted in served and e is not None]
            fresh = [(c, e) for c, e in nodes if c.node_id not in tried] or nodes
            if not fresh:
                return
            with self._lock:
                in_flight = dict(self._in_flight)
            info = InferenceInfo(model=model, user_id=user_id, context_chars=context_chars, in_flight=in_flight)
            chosen = self.select_node(request=info, candidates=[c for c, _ in fresh])
            if chosen is None:
                return
            endpoint = next(e for c, e in fresh if c.node_id == chosen.node_id)
            assert endpoint is not None
            tried.add(chosen.node_id)
            yield Target(
                f"{endpoint.url.rstrip('/')}/v1/worker/inference:chat",
                {"Authorization": f"Bearer {endpoint.token}"},
                chosen.node_id,
                chosen.node_slug,
            )

    @contextmanager
    def _counted(self, target: Target) -> Iterator[None]:
        with self._lock:
            self._in_flight[target.node_id] = self._in_flight.get(target.node_id, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[target.node_id] -= 1

    def stream(
        self,
        body: dict[str, Any],
        *,
        user_id: str,
        deadline: float,
        on_target: Callable[[Target, requests.Response], None],
    ) -> Iterator[Piece]:
        """The model's answer to an Ollama chat ``body`` as pieces; ``ChatError`` when no node could answer.

        Closing the iterator, or the response ``on_target`` is given (from
        any thread), closes the call; the node then stops its backend.
        """
        context_chars = sum(len(str(m.get("content") or "")) for m in body.get("messages", []))
        attempt, last = 0, "no node serves the model"
        for target in self._targets(str(body.get("model")), user_id, context_chars):
            if attempt:
                time.sleep(BACKOFF[min(attempt - 1, len(BACKOFF) - 1)])
            attempt += 1
            started = False
            try:
                with self._counted(target), self._open(target, {**body, "stream": True}, deadline) as resp:
                    on_target(target, resp)
                    for piece in _pieces(resp):
                        started = True
                        yield piece
                    return
            except Transient as exc:
                if started:
                    raise ChatError(502, "orchestrator_inference_failed", "Completion failed") from exc
                last = str(exc)
                log.info(
                    "chat call to %s failed (%s); attempt %d of %d",
                    target.node_slug or "the URL",
                    exc,
                    attempt,
                    ATTEMPTS,
                )
                continue
        if attempt == 0:
            raise ChatError(503, "model_unavailable", "No node serves the model now", param="model")
        log.warning("chat call failed after %d attempts: %s", attempt, last)
        raise ChatError(502, "orchestrator_inference_failed", "Completion failed")

    @contextmanager
    def _open(self, target: Target, body: dict[str, Any], deadline: float) -> Iterator[requests.Response]:
        remaining = max(deadline - time.monotonic(), 1.0)
        try:
            resp = _session.post(
                target.url,
                json=body,
                headers=target.headers,
                timeout=(CONNECT_TIMEOUT, remaining),
                stream=True,
                allow_redirects=False,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Transient(type(exc).__name__) from exc
        with resp:
            if resp.status_code >= 500:
                raise Transient(f"HTTP {resp.status_code}")
            if resp.status_code != 200:
                log.warning("chat call to %s answered HTTP %s", target.node_slug or "the URL", resp.status_code)
                raise ChatError(502, "orchestrator_inference_failed", "Completion failed")
            yield resp


def _drain(resp: requests.Response) -> None:
    """Read the little that follows the ``done`` line (the stream's end), so the call ends cleanly for both sides.

    At most one line's worth: a backend that keeps sending after its end is cut off.
    """
    read = 0
    try:
        for chunk in resp.iter_content(chunk_size=64 * 1024):
            read += len(chunk)
            if read > MAX_LINE_BYTES:
                return
    except requests.RequestException:
        pass


def _pieces(resp: requests.Response) -> Iterator[Piece]:
    """The NDJSON lines of ``resp`` as pieces, up to the ``done`` one; ``Transient`` when the stream breaks."""
    try:
        for raw in resp.iter_lines(chunk_size=1024):
            if not raw.strip():
                continue
            if len(raw) > MAX_LINE_BYTES:
                raise ChatError(502, "orchestrator_inference_failed", "Completion failed")
            try:
                line = json.loads(raw)
            except ValueError as exc:
                raise ChatError(502, "orchestrator_inference_failed", "Completion failed") from exc
            if not isinstance(line, dict):
                continue
            if isinstance(line.get("error"), str):
                log.warning("model answered an error: %s", line["error"][:200])
                raise ChatError(502, "orchestrator_inference_failed", "Completion failed")
            piece = Piece.from_json(line)
            if piece.done:
                _drain(resp)
                yield piece
                return
            yield piece
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout) as exc:
        raise Transient(type(exc).__name__) from exc
    raise Transient("the answer ended without done")
